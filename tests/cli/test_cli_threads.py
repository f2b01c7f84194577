"""`--threads N` works before or after the command, once for every command."""

import torch

from heron.cli import _take_threads, main


def test_threads_is_taken_from_anywhere_on_the_line():
    assert _take_threads(["series", "train", "f.tsv", "--threads", "3", "--quiet"]) == (
        ["series", "train", "f.tsv", "--quiet"], 3)
    assert _take_threads(["--threads=2", "summary", "lenet5"]) == (["summary", "lenet5"], 2)
    assert _take_threads(["summary", "lenet5"]) == (["summary", "lenet5"], None)


def test_threads_sets_torchs_thread_count(capsys):
    before = torch.get_num_threads()
    try:
        assert main(["summary", "lenet5", "--threads", "1"]) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_a_bad_thread_count_is_one_line(capsys):
    assert main(["--threads", "two", "summary", "lenet5"]) == 2
    assert capsys.readouterr().err.strip() == "heron: error: --threads two: give a whole number of threads, 1 or more"
