"""Two processes train like one: the Learner under DDP, the global-batch split, and synced batch norm.

All the two-process checks run in one spawn (gloo, file:// rendezvous, one
thread each; starting processes costs seconds): each rank runs the same
functions this process runs without a process group, saves what it got, and
the tests compare the two. The ranks split every global batch of the
single-process run, so the results agree to rounding (1e-5).

Plain per-process batch norm in train mode is the one source of difference
(each rank normalises its own share): the equality checks use frozen
statistics (eval-mode batch norm, heron's fine-tuning default) or
`convert_sync_batchnorm`, and `test_plain_per_process_batchnorm_is_the_one_difference`
shows the difference is real. Dropout would be the other (each process draws
its own masks), so every model here has dropout 0.
"""

from __future__ import annotations

import fcntl
import io
import os
import shutil
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from _train_helpers import TinyNet, make_data, weights
from heron.nn.modes import batchnorm_eval
from heron.train import Callback, Checkpoint, Learner, MetricsLogger, ProgressBar
from heron.train import distributed
from heron.train.distributed import GlobalBatchSampler, SyncBatchNorm, convert_sync_batchnorm
from heron.transfer.extract import FeatureBatches
from heron.transfer.heads import GapHead

WORLD = 2
TOL = dict(atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- the runs, the same in one process and in two


def _head_learner(callbacks=()) -> Learner:
    """GapHead on fixed features: 51 training items (two cached copies each; batches 16,16,16,3: the
    last one splits 2/1, which the loss weighting must handle) and 17 validation items (8,8,1: the
    last is padded for two ranks, and validation must drop the padding)."""
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (68,), generator=g)
    item = torch.cat([torch.arange(51), torch.arange(51), 51 + torch.arange(17)])  # item of each cached row
    features = torch.randn(len(item), 6, generator=g)
    features[:, :3] += 2 * F.one_hot(y[item], 3)
    rows = torch.stack([torch.arange(51), 51 + torch.arange(51)], 1).numpy()
    train = FeatureBatches(features.numpy(), rows, y[:51], batch_size=16, shuffle=True)
    valid = FeatureBatches(features.numpy(), (102 + torch.arange(17)).numpy(), y[51:], batch_size=8)
    torch.manual_seed(0)
    head = GapHead(6, 3, dropout=0.0)
    return Learner(head, train, valid, lr=0.05, metrics=("accuracy", "log_loss"), callbacks=list(callbacks),
                   quiet=True)


class FrozenStatsNet(TinyNet):
    """TinyNet whose batch norms keep their running statistics in train mode (heron's fine-tuning default)."""

    def train(self, mode: bool = True) -> "FrozenStatsNet":
        super().train(mode)
        if mode:
            batchnorm_eval(self)
        return self


def _cnn_learner(kind: str, callbacks=()) -> Learner:
    """TinyNet on 21 images (batches 8,8,5 -> 4/4, 4/4, 3/2) through GlobalBatchSampler; 9 to validate.

    kind: "frozen" (eval-mode batch norm), "sync" (converted), "plain" (nn.BatchNorm2d).
    """
    torch.manual_seed(0)
    model = FrozenStatsNet() if kind == "frozen" else TinyNet()
    if kind == "sync":
        model = convert_sync_batchnorm(model)
    x, y = make_data(21, seed=1)
    xv, yv = make_data(9, seed=2)
    train = DataLoader(TensorDataset(x, y), batch_sampler=GlobalBatchSampler(21, 8, shuffle=True, seed=5))
    valid = DataLoader(TensorDataset(xv, yv), batch_sampler=GlobalBatchSampler(9, 4))
    return Learner(model, train, valid, optimizer="sgd", lr=0.05, quiet=True, callbacks=list(callbacks))


class StopAfter(Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def after_epoch(self, learner) -> None:
        learner.stop_training = learner.stop_training or learner.epoch == self.epoch


def _numbers(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in ("phase", "seconds")} for row in history]


def _fit(learner: Learner, epochs: int = 4, **kwargs) -> dict:
    torch.manual_seed(1)  # the shuffles of FeatureBatches
    history = learner.fit(epochs, **kwargs)
    return {"weights": weights(learner.model), "history": _numbers(history)}


def _resumed(make, out: Path) -> dict:
    """Fit 4 epochs stopped after the 2nd, then a fresh learner resumed from the checkpoint."""
    _fit(make([StopAfter(2), Checkpoint(out, every_seconds=0)]))
    learner = make([Checkpoint(out, every_seconds=0)])
    torch.manual_seed(123)  # the checkpoint's random state must win over this one
    learner.fit(4, resume=out)
    return {"weights": weights(learner.model)}


def _head_run(out: Path) -> dict:
    bar = io.StringIO()
    learner = _head_learner([ProgressBar(file=bar), MetricsLogger(out / "head"), Checkpoint(out / "ckpt")])
    result = _fit(learner)
    result["probs"], result["targets"] = learner.get_preds()
    result["progress"] = bar.getvalue()
    return result


def _lr_find_run() -> dict:
    result = _head_learner().lr_find(num_iter=12)
    return {"lrs": result.lrs, "losses": result.losses}


def _all_runs(out: Path) -> dict:
    return {
        "head": _head_run(out),
        "head_resumed": _resumed(_head_learner, out / "head_resume"),
        "lr_find": _lr_find_run(),
        "cnn_frozen": _fit(_cnn_learner("frozen")),
        "cnn_sync": _fit(_cnn_learner("sync")),
        "cnn_sync_resumed": _resumed(lambda cbs: _cnn_learner("sync", cbs), out / "cnn_resume"),
        "cnn_plain": _fit(_cnn_learner("plain")),
    }


# ---------------------------------------------------------------- SyncBatchNorm against BatchNorm2d

SHARES = {"uneven": (3, 2), "one rank empty": (5, 0)}


def _bn_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    return torch.randn(5, 4, 3, 3, generator=g) * 2 + 1, torch.randn(5, 4, 3, 3, generator=g)  # x, output weights


def _bn_run(bn: nn.Module, x: torch.Tensor, w: torch.Tensor) -> dict:
    """Forward and backward of sum(bn(x) * w), a second training step, then eval: everything to compare."""
    with torch.no_grad():
        bn.weight.copy_(torch.linspace(0.5, 1.5, 4))
        bn.bias.copy_(torch.linspace(-1, 1, 4))
    x = x.clone().requires_grad_()
    y = bn(x)
    (y * w).sum().backward()
    bn(x.detach() * 0.5 + 1)
    bn.eval()
    return {"y": y.detach(), "x_grad": x.grad, "weight_grad": bn.weight.grad, "bias_grad": bn.bias.grad,
            "running_mean": bn.running_mean.clone(), "running_var": bn.running_var.clone(),
            "batches": bn.num_batches_tracked.clone(), "eval_y": bn(x.detach()).detach()}


def _syncbn_checks(rank: int) -> dict:
    x, w = _bn_inputs()
    out = {}
    for name, shares in SHARES.items():
        lo = sum(shares[:rank])
        for momentum in (0.1, None):
            got = _bn_run(SyncBatchNorm(4, momentum=momentum), x[lo : lo + shares[rank]], w[lo : lo + shares[rank]])
            for key in ("weight_grad", "bias_grad"):  # each rank holds its own share's gradient
                got[key] = distributed.all_reduce_sum(got[key])
            out[f"{name}, momentum {momentum}"] = got
    return out


# ---------------------------------------------------------------- the spawn


def _rank_main(rank: int, tmp: Path) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{tmp / 'rendezvous'}", rank=rank, world_size=WORLD,
                            timeout=timedelta(seconds=60))
    try:
        results = _all_runs(tmp / "run")
        results["syncbn"] = _syncbn_checks(rank)
        results["group"] = (distributed.rank(), distributed.world_size(), distributed.is_main())
        results["shard"] = list(distributed.shard(list(range(7))))
        results["gathered"] = distributed.gather_cat(torch.arange(rank + 2))
        results["broadcast"] = distributed.broadcast_object({"from": rank})
        results["objects"] = distributed.gather_objects(f"rank {rank}")
        torch.save(results, tmp / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _spawn(tmp: Path) -> None:
    ctx = mp.spawn(_rank_main, args=(tmp,), nprocs=WORLD, join=False)
    deadline = time.monotonic() + 120
    while not ctx.join(timeout=1):
        if time.monotonic() > deadline:
            for proc in ctx.processes:
                proc.terminate()
            pytest.fail("the two-process run did not finish in 120 s (a collective waiting for a rank?)")


@pytest.fixture(scope="module")
def two(tmp_path_factory) -> SimpleNamespace:
    """The two-process run: every rank's results (`ranks`) and its folder (`dir`).

    Spawned once per session: under pytest-xdist the workers share one run
    (the first to take the lock spawns it, the others wait and read it).
    """
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        tmp = tmp_path_factory.mktemp("two_procs")
        _spawn(tmp)
    else:
        tmp = tmp_path_factory.getbasetemp().parent / "two_procs"  # this session's, shared by its workers
        with open(tmp.parent / "two_procs.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (tmp / "done").is_file():
                shutil.rmtree(tmp, ignore_errors=True)
                tmp.mkdir()
                _spawn(tmp)
                (tmp / "done").touch()
    return SimpleNamespace(ranks=[torch.load(tmp / f"rank{r}.pt", weights_only=True) for r in range(WORLD)], dir=tmp)


@pytest.fixture(scope="module")
def one(tmp_path_factory) -> dict:
    """The same runs in this process, with no process group."""
    assert not dist.is_initialized()
    return _all_runs(tmp_path_factory.mktemp("one_proc"))


def _close(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key].double(), b[key].double(), **TOL, msg=key)


def _close_history(a: list[dict], b: list[dict]) -> None:
    assert [row.keys() for row in a] == [row.keys() for row in b]
    for row_a, row_b in zip(a, b):
        assert row_a == pytest.approx(row_b, abs=1e-5, rel=1e-5)


# ---------------------------------------------------------------- the tests


def test_head_on_features_two_processes_reach_the_single_process_weights(two, one):
    for rank in range(WORLD):
        _close(two.ranks[rank]["head"]["weights"], one["head"]["weights"])


def test_validation_metrics_and_preds_equal_the_single_process_ones_on_every_rank(two, one):
    for rank in range(WORLD):
        got = two.ranks[rank]["head"]
        _close_history(got["history"], one["head"]["history"])
        torch.testing.assert_close(got["probs"], one["head"]["probs"], **TOL)  # same order: padding dropped
        assert torch.equal(got["targets"], one["head"]["targets"])
        _close_history(two.ranks[rank]["cnn_sync"]["history"], one["cnn_plain"]["history"])
    assert set(one["head"]["history"][0]) >= {"train_loss", "valid_loss", "valid_accuracy", "valid_log_loss"}


def test_only_rank_0_writes_logs_progress_and_checkpoints(two):
    tmp = two.dir
    assert len((tmp / "run" / "head" / "metrics.jsonl").read_text().splitlines()) == 4  # not 8
    assert "head 4/4" in two.ranks[0]["head"]["progress"] and two.ranks[1]["head"]["progress"] == ""
    assert (tmp / "run" / "ckpt" / "last.safetensors").is_file()


def test_resumed_two_process_fit_reaches_the_uninterrupted_weights(two):
    for rank in range(WORLD):
        _close(two.ranks[rank]["head_resumed"]["weights"], two.ranks[rank]["head"]["weights"])  # FeatureBatches: rng state
        _close(two.ranks[rank]["cnn_sync_resumed"]["weights"], two.ranks[rank]["cnn_sync"]["weights"])  # sampler epoch


def test_lr_find_sweeps_the_same_global_batches(two, one):
    for rank in range(WORLD):
        assert two.ranks[rank]["lr_find"]["lrs"] == pytest.approx(one["lr_find"]["lrs"])
        assert two.ranks[rank]["lr_find"]["losses"] == pytest.approx(one["lr_find"]["losses"], rel=1e-5)


def test_cnn_with_frozen_batchnorm_stats_trains_like_one_process(two, one):
    for rank in range(WORLD):
        _close(two.ranks[rank]["cnn_frozen"]["weights"], one["cnn_frozen"]["weights"])


def test_cnn_with_synced_batchnorm_equals_one_process_batchnorm(two, one):
    for rank in range(WORLD):  # weights and running statistics, against plain nn.BatchNorm2d in one process
        _close(two.ranks[rank]["cnn_sync"]["weights"], one["cnn_plain"]["weights"])
    _close(one["cnn_sync"]["weights"], one["cnn_plain"]["weights"])  # without a process group: plain batch norm


def test_plain_per_process_batchnorm_is_the_one_difference(two, one):
    got, ref = two.ranks[0]["cnn_plain"]["weights"], one["cnn_plain"]["weights"]
    worst = max((got[k].double() - ref[k].double()).abs().max().item() for k in ref)
    assert worst > 1e-3  # each rank normalised its own share; synced and frozen statistics agree (tests above)


@pytest.mark.parametrize("case", [f"{s}, momentum {m}" for s in SHARES for m in (0.1, None)])
def test_sync_batchnorm_matches_batchnorm_over_the_concatenated_batch(two, case):
    x, w = _bn_inputs()
    momentum = None if case.endswith("None") else 0.1
    ref = _bn_run(nn.BatchNorm2d(4, momentum=momentum), x, w)
    shares = SHARES[case.split(",")[0]]
    for rank in range(WORLD):
        got, lo = two.ranks[rank]["syncbn"][case], sum(shares[:rank])
        part = slice(lo, lo + shares[rank])
        for key in ("y", "x_grad", "eval_y"):
            torch.testing.assert_close(got[key], ref[key][part], **TOL, msg=key)
        for key in ("weight_grad", "bias_grad", "running_mean", "running_var", "batches"):
            torch.testing.assert_close(got[key], ref[key], **TOL, msg=key)


def test_helpers_in_the_spawned_group(two):
    assert [r["group"] for r in two.ranks] == [(0, 2, True), (1, 2, False)]
    assert [r["shard"] for r in two.ranks] == [[0, 2, 4, 6], [1, 3, 5]]
    for r in two.ranks:
        assert r["gathered"].tolist() == [0, 1, 0, 1, 2] and r["broadcast"] == {"from": 0}
        assert r["objects"] == ["rank 0", "rank 1"]


# ---------------------------------------------------------------- one process, no spawn


def test_helpers_without_a_process_group_are_the_identity(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed.init_from_env() is None
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert distributed.init_from_env() is None and not dist.is_initialized()
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)
    t = torch.arange(5)
    assert distributed.gather_cat(t) is t and distributed.all_reduce_sum(t) is t
    items = ["a", "b", "c"]
    assert distributed.shard(items) == items and distributed.broadcast_object(items) is items
    assert distributed.gather_objects(items) == [items]
    distributed.barrier()
    assert not distributed.is_distributed()


def _merge(parts: list[list[int]], world: int) -> list[int]:
    """Interleave the ranks' parts of one global batch back into it (rank r held positions r::world)."""
    merged = [None] * sum(len(p) for p in parts)
    for r, part in enumerate(parts):
        merged[r::world] = part
    return merged


@pytest.mark.parametrize("n, batch, world", [(21, 8, 2), (17, 8, 2), (10, 4, 3), (3, 4, 4), (16, 8, 2)])
def test_global_batch_sampler_splits_every_single_process_batch(n, batch, world):
    single = list(GlobalBatchSampler(n, batch, shuffle=True, seed=3, rank=0, world=1))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(3)).tolist()
    assert single == [perm[i : i + batch] for i in range(0, n, batch)]  # world 1: an ordinary shuffled sampler
    ranks = [list(GlobalBatchSampler(n, batch, shuffle=True, seed=3, rank=r, world=world)) for r in range(world)]
    assert {len(r) for r in ranks} == {len(single)} == {len(GlobalBatchSampler(n, batch, world=world, rank=0))}
    for i, expected in enumerate(single):
        parts = [ranks[r][i] for r in range(world)]
        assert all(parts)  # no rank without a sample
        merged = _merge(parts, world)
        assert merged[: len(expected)] == expected and merged[len(expected):] == perm[: len(merged) - len(expected)]


def test_global_batch_sampler_order_follows_seed_and_epoch():
    sampler = GlobalBatchSampler(12, 4, shuffle=True, seed=0, rank=0, world=1)
    first = list(sampler)
    sampler.set_epoch(1)
    second = list(sampler)
    assert first != second and list(sampler) == second
    again = GlobalBatchSampler(12, 4, shuffle=True, seed=0, rank=0, world=1)
    again.set_epoch(1)
    assert list(again) == second  # a resumed run sets the epoch and sees the same batches
    assert list(GlobalBatchSampler(10, 4, drop_last=True, rank=0, world=1)) == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_learner_sets_the_sampler_epoch_before_each_epoch_and_on_resume(tmp_path):
    seen = []

    class Spy(Callback):
        def before_train(self, learner):
            seen.append(learner.train_dl.batch_sampler.epoch)

    _cnn_learner("plain", [Spy(), StopAfter(2), Checkpoint(tmp_path, every_seconds=0)]).fit(4)
    _cnn_learner("plain", [Spy(), Checkpoint(tmp_path, every_seconds=0)]).fit(4, resume=tmp_path)
    assert seen == [1, 2, 3, 4]


def test_split_loaders_are_found_through_a_wrapper():
    class Wrapper:  # like heron.tasks.classify.ImageBatches: the DataLoader as `.loader`
        def __init__(self, loader):
            self.loader = loader

    sampler = GlobalBatchSampler(9, 4, rank=0, world=2)
    assert distributed.find_split(Wrapper(DataLoader(range(9), batch_sampler=sampler))) is sampler
    assert distributed.find_split(DataLoader(range(9), batch_size=4)) is None
    assert distributed.find_split(GlobalBatchSampler(9, 4, rank=0, world=1)) is None  # one process: nothing to gather


def test_feature_batches_split_each_global_batch_across_ranks():
    features = np.arange(17 * 2, dtype=np.float32).reshape(17, 2)
    targets = torch.arange(17)
    single = [y.tolist() for _, y in FeatureBatches(features, np.arange(17), targets, batch_size=8)]
    ranks = [[y.tolist() for _, y in FeatureBatches(features, np.arange(17), targets, 8, rank=r, world=2)]
             for r in range(2)]
    assert single == [list(range(8)), list(range(8, 16)), [16]]
    assert [_merge([ranks[0][i], ranks[1][i]], 2) for i in range(3)] == [list(range(8)), list(range(8, 16)),
                                                                         [16, 0]]  # the last one padded
    batches = FeatureBatches(features, np.arange(17), targets, 8, rank=1, world=2)
    assert (len(batches), batches.n, distributed.find_split(batches)) == (3, 17, batches)


def test_convert_sync_batchnorm_shares_parameters_and_leaves_frozen_statistics():
    model = TinyNet()
    bn = model.stem.bn if hasattr(model.stem, "bn") else next(m for m in model.modules()
                                                             if isinstance(m, nn.BatchNorm2d))
    weight = bn.weight
    weight.requires_grad_(False)
    converted = convert_sync_batchnorm(model)
    layers = [m for m in converted.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert layers and all(type(m) is SyncBatchNorm for m in layers)
    assert any(m.weight is weight and not m.weight.requires_grad for m in layers)
    frozen = convert_sync_batchnorm(FrozenStatsNet())
    assert all(type(m) is nn.BatchNorm2d for m in frozen.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm))


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    """torchrun with two CPU processes (GPUs hidden) on a free port; OMP_NUM_THREADS=1 as torchrun sets it."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)


def test_torchrun_launches_python_dash_m_heron():
    done = _torchrun("-m", "heron", "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("usage: heron") == 2


def test_init_from_env_joins_the_group_torchrun_describes(tmp_path):
    script = tmp_path / "join.py"
    script.write_text(
        "import sys, torch\n"
        "from heron.train import distributed\n"
        "device = distributed.init_from_env()\n"
        "assert device == torch.device('cpu') and distributed.world_size() == 2\n"
        "got = distributed.gather_cat(torch.tensor([distributed.rank()]))\n"
        "if distributed.is_main():\n"
        "    open(sys.argv[1], 'w').write(str(got.tolist()))\n"
    )
    done = _torchrun(str(script), str(tmp_path / "out.txt"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out.txt").read_text() == "[0, 1]"
