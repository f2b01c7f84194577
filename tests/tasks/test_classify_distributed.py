"""`torchrun --nproc-per-node 2 -m heron train`: the same run folder and weights as one process.

The reference is `torchrun --nproc-per-node 1`: under torchrun the
fine-tuning batches are cut by the seed and the epoch (GlobalBatchSampler)
and split between the processes, as the head's feature batches always are,
so both runs see the same global batches and their weights agree to float
rounding. Dropout
is 0 because each process draws its own masks, and batch norm is frozen
(heron's fine-tuning default) or synchronised: per-process batch
statistics are the one documented source of difference. The synchronised
case fine-tunes with SGD: Adam divides by the root of each gradient's running
square, so where a gradient is near zero it turns the processes' different
summation order (rounding, 1e-7) into a visible share of a step.
"""

import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file


FLAGS = ["--arch", "resnet18", "--weights", "none", "--size", "32", "--crop-pct", "1.0", "--epochs", "3",
         "--lr", "0.01", "--dropout", "0", "--batch-size", "8", "--unfreeze", "1", "--finetune-epochs", "2",
         "--finetune-lr", "0.003", "--augment", "none", "--engine", "torch", "--figures", "none", "--workers", "0",
         "--quiet", "--seed", "3"]


def _torchrun(*args: str, env: dict | None = None, processes: int = 2) -> subprocess.CompletedProcess:
    """`torchrun --nproc-per-node N -m heron ARGS` on the CPU (GPUs hidden), OMP_NUM_THREADS=1 as torchrun sets it."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes),
               "-m", "heron", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", **(env or {})}
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.parametrize("sync_bn", [False, True], ids=["frozen-bn", "sync-bn"])
def test_two_processes_train_the_same_weights_as_one(color_dataset, tmp_path, sync_bn):
    extra = ["--update-bn", "--sync-bn", "--finetune-optimizer", "sgd"] if sync_bn else []
    cache = str(tmp_path / "cache")
    single = tmp_path / "single"
    alone = _torchrun("train", str(color_dataset), "--out", str(single), "--cache-dir", cache, *FLAGS, *extra,
                      processes=1)
    assert alone.returncode == 0, alone.stderr[-3000:]
    double = tmp_path / "double"
    done = _torchrun("train", str(color_dataset), "--out", str(double), "--cache-dir", str(tmp_path / "cache2"),
                     *FLAGS, *extra)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == str(double)  # rank 0 alone prints the run folder
    one, two = load_file(str(single / "model.safetensors")), load_file(str(double / "model.safetensors"))
    assert one.keys() == two.keys()
    for key in one:
        torch.testing.assert_close(two[key].float(), one[key].float(), rtol=1e-4, atol=1e-5, msg=key)
    lines = (double / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 5  # 3 head + 2 fine-tuning epochs, written once (by rank 0)



INTERRUPT = '''
import os
from heron.train import learner

_original = learner.Learner._one_epoch
_count = {"epochs": 0}


def _one_epoch(self):
    _count["epochs"] += 1
    if _count["epochs"] == int(os.environ["HERON_TEST_INTERRUPT_AT"]):
        raise KeyboardInterrupt
    return _original(self)


learner.Learner._one_epoch = _one_epoch
'''


def test_an_interrupted_torchrun_run_resumes_to_the_same_weights(color_dataset, tmp_path):
    single = tmp_path / "single"
    alone = _torchrun("train", str(color_dataset), "--out", str(single), "--cache-dir", str(tmp_path / "c1"), *FLAGS,
                      processes=1)
    assert alone.returncode == 0, alone.stderr[-3000:]
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(INTERRUPT)  # Ctrl-C in the first fine-tuning epoch, on every rank
    out, cache = str(tmp_path / "double"), str(tmp_path / "c2")
    env = {"PYTHONPATH": f"{hook}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "HERON_TEST_INTERRUPT_AT": "4"}
    stopped = _torchrun("train", str(color_dataset), "--out", out, "--cache-dir", cache, *FLAGS, env=env)
    assert stopped.returncode != 0 and "continue with --resume" in stopped.stderr
    assert not (tmp_path / "double" / "model.safetensors").exists()
    resumed = _torchrun("train", "--out", out, "--resume", "--quiet", "--figures", "none", str(color_dataset))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    one, two = load_file(str(single / "model.safetensors")), load_file(str(tmp_path / "double" / "model.safetensors"))
    for key in one:
        torch.testing.assert_close(two[key].float(), one[key].float(), rtol=1e-4, atol=1e-5, msg=key)
