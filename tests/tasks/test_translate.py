"""Translation task: the pairs reader, a tiny run that learns to reverse words, and the run folder's use."""

from __future__ import annotations

import json
import random

import pytest
import torch

from heron.errors import DataError
from heron.tasks.sequence.translate import (TranslateConfig, Translator, exact_match, load_translator, make_batch,
                                            read_pairs, train, train_on_pairs, translate)
from heron.train.run import RunFolder


def _reversals(n: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    words = ["".join(rng.choice("abcdef") for _ in range(rng.randint(2, 5))) for _ in range(n)]
    return [(w, w[::-1]) for w in words]


TINY = dict(batch_size=32, lr=1e-2, embed_dim=16, hidden_size=32, decoder_size=32, attention_size=32, quiet=True)


@pytest.fixture(scope="module")
def reversal_run(tmp_path_factory):
    torch.manual_seed(0)
    folder = RunFolder.create(tmp_path_factory.mktemp("translate") / "run", "x")
    held_back = _reversals(100, seed=1)
    result = train_on_pairs(_reversals(400, seed=0), held_back, folder, TranslateConfig(epochs=6, **TINY))
    return result, held_back


def test_a_tiny_run_learns_to_reverse_words(reversal_run):
    result, held_back = reversal_run
    assert result.history[0]["valid_exact"] < 0.3  # it starts knowing nothing ...
    assert result.metrics["valid_exact"] >= 0.8  # ... and ends reversing words it never saw
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"] / 5


def test_the_run_folder_holds_everything_and_loads_back(reversal_run):
    result, held_back = reversal_run
    for name in ("config.json", "source_tokenizer.json", "target_tokenizer.json", "model.safetensors",
                 "metrics.jsonl", "attention.png"):
        assert (result.path / name).is_file(), name
    lines = (result.path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["valid_exact"] for line in lines] == [h["valid_exact"] for h in result.history]
    assert json.loads((result.path / "config.json").read_text())["results"]["valid_exact"] == result.metrics["valid_exact"]
    assert (result.path / "attention.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    translator = load_translator(result.path)
    assert isinstance(translator, Translator)
    assert exact_match(translator, held_back) == pytest.approx(result.metrics["valid_exact"])
    words = [s for s, _ in held_back[:5]]
    assert translate(result.path, words) == translate(translator, words)
    beam = translate(translator, words, beam=3)
    assert sum(out == w[::-1] for out, w in zip(beam, words)) >= 4
    assert translate(translator, "abc", beam=2)[0] == "cba"


def test_batches_put_eos_at_both_ends_and_pad_with_zero():
    (src, lengths, tgt_in), tgt_out = make_batch([[5, 6, 7], [8]], [[3, 4], [9, 9, 9]])
    assert src.tolist() == [[5, 6, 7, 2], [8, 2, 0, 0]] and lengths.tolist() == [4, 2]
    assert tgt_in.tolist() == [[2, 3, 4, 0], [2, 9, 9, 9]]
    assert tgt_out.tolist() == [[3, 4, 2, 0], [9, 9, 9, 2]]


def test_pairs_reader_names_the_file_and_line(tmp_path):
    good = tmp_path / "good.tsv"
    good.write_text("a b\tx\n\nc\t y z \n", encoding="utf-8")
    assert read_pairs(good) == [("a b", "x"), ("c", "y z")]
    for text, line, words in [("a\tb\nno tab here\n", 2, "no tab"), ("a\tb\n\tb\n", 2, "source is empty"),
                              ("a\t\n", 1, "target is empty")]:
        bad = tmp_path / "bad.tsv"
        bad.write_text(text, encoding="utf-8")
        with pytest.raises(DataError, match=f"bad.tsv:{line}: .*{words}"):
            read_pairs(bad)
    empty = tmp_path / "empty.tsv"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(DataError, match="empty"):
        train(empty, out=tmp_path / "run")


def test_load_translator_refuses_a_folder_that_is_not_a_run(tmp_path):
    with pytest.raises(DataError, match="no config.json"):
        load_translator(tmp_path)
