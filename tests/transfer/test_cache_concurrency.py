"""The feature cache shared by several processes, and interrupted: kills, Ctrl-C, torn files, clears."""

import json
import multiprocessing
import os
import signal
import sys
import time
import zlib

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from heron.transfer.cache import CacheDamaged, FeatureCache, fingerprint
from heron.transfer.extract import extract_features

pytestmark = pytest.mark.skipif(
    sys.platform == "win32" or "fork" not in multiprocessing.get_all_start_methods(),
    reason="shared caches need fcntl locks; the children are forked",
)
_FORK_UNSAFE = ("openvino", "onnxruntime")  # their thread pools do not survive a fork: the child can hang or crash


def _mp():
    """The children's start method: fork, unless this process has loaded a library a fork would break
    (an earlier test in the same worker ran an engine); then fresh interpreters."""
    unsafe = any(name in sys.modules for name in _FORK_UNSAFE)
    return multiprocessing.get_context("spawn" if unsafe else "fork")

KEY = {"test": "concurrency"}
DIM = 12
N_IMAGES = 12


def _keys(n):
    return [f"{i:04d}|eval" for i in range(n)]


def _feats(keys):
    """Deterministic float16 rows, one per key."""
    return np.stack([
        np.random.default_rng(zlib.crc32(k.encode())).standard_normal(DIM).astype(np.float16) for k in keys
    ])


def _read_back(root, keys, key=KEY):
    cache = FeatureCache(root, key)
    return np.asarray(cache.array()[cache.rows(keys)])


class TinyTrunk(nn.Module):
    """A trunk with `features(x) -> (N, D)`; optionally slow, or interrupted at one forward."""

    def __init__(self, delay=0.0, interrupt_at=None):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten())
        self.delay, self.interrupt_at, self.calls = delay, interrupt_at, 0

    def features(self, x):
        self.calls += 1
        if self.calls == self.interrupt_at:
            raise KeyboardInterrupt
        time.sleep(self.delay)
        return self.net(x)  # (N, 32)


def _images(folder, n=N_IMAGES):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = folder / f"img{i:02d}.png"
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def _identity(img):
    return img


def _extract(model, paths, root, batch_size=2):
    cache = FeatureCache(root, {"trunk": "tiny"})
    ext = extract_features(model, paths, cache, {"eval": _identity}, batch_size=batch_size, workers=0, progress=False)
    return cache, ext


def _reference(paths, root):
    cache, ext = _extract(TinyTrunk(), paths, root)
    assert ext.ok().all()
    return np.asarray(cache.array()[ext.rows[:, 0]])


def _run(children, timeout=30):
    for child in children:
        child.start()
    for child in children:
        child.join(timeout)
    return [child.exitcode for child in children]


def _wait_for_rows(root, key, n, child, timeout=20):
    """Poll the cache until it holds `n` committed rows (or the child ends)."""
    cache = FeatureCache(root, key)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and child.is_alive():
        cache.refresh()
        if len(cache) >= n:
            return len(cache)
        time.sleep(0.005)
    raise AssertionError(f"the child committed {len(cache)} rows, not {n}")


# ---- several writers at once ------------------------------------------------------------


def _writer(root, keys, seed, barrier):
    order = np.random.default_rng(seed).permutation(len(keys))
    barrier.wait()
    cache = FeatureCache(root, KEY)
    for start in range(0, len(keys), 5):
        cache.refresh()
        chunk = [keys[i] for i in order[start : start + 5] if keys[i] not in cache.index]
        if chunk:
            cache.add(chunk, _feats(chunk))


@pytest.mark.parametrize("writers", [2, 4])
def test_writers_at_once_store_every_row_once_and_bitwise(tmp_path, writers):
    keys = _keys(60)
    barrier = _mp().Barrier(writers)
    children = [_mp().Process(target=_writer, args=(tmp_path / "shared", keys, s, barrier)) for s in range(writers)]
    assert _run(children) == [0] * writers
    single = tmp_path / "single"
    _writer(single, keys, 0, _mp().Barrier(1))
    cache = FeatureCache(tmp_path / "shared", KEY)
    assert len(cache) == len(keys) and not cache.rebuilt
    assert cache.features_path.stat().st_size == len(keys) * DIM * 2  # no duplicate or stray rows
    cache.verify(keys)
    shared = _read_back(tmp_path / "shared", keys)
    assert shared.tobytes() == _read_back(single, keys).tobytes() == _feats(keys).tobytes()


def _extractor(paths, shift, root, out, barrier):
    barrier.wait()
    paths = paths[shift:] + paths[:shift]  # each process starts elsewhere in the list
    cache, ext = _extract(TinyTrunk(delay=0.005), paths, root)
    assert ext.ok().all() and not ext.errors and not cache.rebuilt  # nobody saw damage
    np.save(out, np.roll(np.asarray(cache.array()[ext.rows[:, 0]]), shift, axis=0))


@pytest.mark.parametrize("processes", [2, 4])
def test_extractions_at_once_all_succeed_and_match_one_process(tmp_path, processes):
    paths = _images(tmp_path / "images")
    reference = _reference(paths, tmp_path / "single")
    barrier = _mp().Barrier(processes)
    outs = [tmp_path / f"seen{i}.npy" for i in range(processes)]
    children = [
        _mp().Process(target=_extractor, args=(paths, 3 * i, tmp_path / "shared", out, barrier))
        for i, out in enumerate(outs)
    ]
    assert _run(children) == [0] * processes
    for out in outs:  # what each process read back
        assert np.load(out).tobytes() == reference.tobytes()
    cache, again = _extract(TinyTrunk(), paths, tmp_path / "shared")
    assert again.forwards == 0 and not cache.rebuilt
    assert np.asarray(cache.array()[again.rows[:, 0]]).tobytes() == reference.tobytes()


# ---- interruptions ----------------------------------------------------------------------


def _slow_extractor(paths, root):
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _extract(TinyTrunk(delay=0.2), paths, root)
    except KeyboardInterrupt:
        sys.exit(7)  # the interrupt came through extract_features


@pytest.mark.parametrize("sig, exitcode", [(signal.SIGKILL, -signal.SIGKILL), (signal.SIGINT, 7)])
def test_killed_extraction_keeps_its_finished_batches(tmp_path, sig, exitcode):
    paths = _images(tmp_path / "images")
    root = tmp_path / "cache"
    child = _mp().Process(target=_slow_extractor, args=(paths, root))
    child.start()
    seen = _wait_for_rows(root, {"trunk": "tiny"}, 4, child)  # two batches of two committed
    os.kill(child.pid, sig)
    child.join(10)
    assert child.exitcode == exitcode
    kept = FeatureCache(root, {"trunk": "tiny"})
    assert not kept.rebuilt and seen <= len(kept) < N_IMAGES
    model = TinyTrunk()
    cache, ext = _extract(model, paths, root)
    assert not cache.rebuilt and ext.ok().all()
    assert ext.forwards == N_IMAGES - len(kept)  # nothing finished before the kill is computed again
    assert np.asarray(cache.array()[ext.rows[:, 0]]).tobytes() == _reference(paths, tmp_path / "ref").tobytes()


def test_ctrl_c_in_process_commits_exactly_the_finished_batches(tmp_path):
    paths = _images(tmp_path / "images")
    with pytest.raises(KeyboardInterrupt):
        _extract(TinyTrunk(interrupt_at=4), paths, tmp_path / "cache")  # three batches of two finished
    kept = FeatureCache(tmp_path / "cache", {"trunk": "tiny"})
    assert len(kept) == 6 and not kept.rebuilt
    cache, ext = _extract(TinyTrunk(), paths, tmp_path / "cache")
    assert ext.forwards == N_IMAGES - 6
    assert np.asarray(cache.array()[ext.rows[:, 0]]).tobytes() == _reference(paths, tmp_path / "ref").tobytes()


def _killable_writer(root, keys):
    cache = FeatureCache(root, KEY)
    for start in range(0, len(keys), 3):
        cache.add(keys[start : start + 3], _feats(keys[start : start + 3]))
        time.sleep(0.01)


def test_writer_killed_in_a_loop_leaves_a_cache_the_next_writer_extends(tmp_path):
    keys = _keys(3000)
    child = _mp().Process(target=_killable_writer, args=(tmp_path, keys))
    child.start()
    _wait_for_rows(tmp_path, KEY, 30, child)
    os.kill(child.pid, signal.SIGKILL)
    child.join(10)
    cache = FeatureCache(tmp_path, KEY)
    done = [k for k in keys if k in cache.index]
    assert not cache.rebuilt and len(done) >= 30 and done == keys[: len(done)]
    cache.verify(done)
    rest = keys[len(done) : len(done) + 20]
    cache.add(rest, _feats(rest))
    assert _read_back(tmp_path, done + rest).tobytes() == _feats(done + rest).tobytes()


# ---- damaged and untidy files -----------------------------------------------------------


def _cache_with_rows(root, n=6):
    cache = FeatureCache(root, KEY)
    cache.add(_keys(n), _feats(_keys(n)))
    return cache


def test_torn_last_record_is_ignored_then_cut_by_the_next_writer(tmp_path):
    cache = _cache_with_rows(tmp_path)
    with open(cache.log_path, "ab") as fh:
        fh.write(b"6 123 0006|" + b"x" * 300)  # a writer killed in the middle of a record
    reopened = FeatureCache(tmp_path, KEY)
    assert len(reopened) == 6 and not reopened.rebuilt
    reopened.verify(_keys(6))
    reopened.add(_keys(9)[6:], _feats(_keys(9)[6:]))
    assert b"xxx" not in cache.log_path.read_bytes() and cache.log_path.read_bytes().endswith(b"\n")
    assert len(FeatureCache(tmp_path, KEY)) == 9
    assert _read_back(tmp_path, _keys(9)).tobytes() == _feats(_keys(9)).tobytes()


def test_garbled_record_is_ignored(tmp_path):
    cache = _cache_with_rows(tmp_path)
    log = bytearray(cache.log_path.read_bytes())
    last = log.rindex(b"0005|eval")
    log[last] = ord("9")  # the line's own CRC no longer matches
    cache.log_path.write_bytes(bytes(log))
    reopened = FeatureCache(tmp_path, KEY)
    assert sorted(reopened.index) == _keys(5) and not reopened.rebuilt


def test_trailing_bytes_in_features_are_ignored_then_replaced(tmp_path):
    cache = _cache_with_rows(tmp_path)
    with open(cache.features_path, "ab") as fh:  # rows of a writer killed before its records
        fh.write(os.urandom(5 * DIM * 2 + 7))
    reopened = FeatureCache(tmp_path, KEY)
    assert len(reopened) == 6 and not reopened.rebuilt and reopened.array().shape == (6, DIM)
    reopened.verify(_keys(6))
    reopened.add(_keys(9)[6:], _feats(_keys(9)[6:]))
    assert cache.features_path.stat().st_size == 9 * DIM * 2
    assert _read_back(tmp_path, _keys(9)).tobytes() == _feats(_keys(9)).tobytes()


def test_flipped_byte_in_a_committed_row_is_damage(tmp_path):
    cache = _cache_with_rows(tmp_path)
    raw = bytearray(cache.features_path.read_bytes())
    raw[2 * DIM * 2 + 3] ^= 0x10  # one bit of row 2
    cache.features_path.write_bytes(bytes(raw))
    reopened = FeatureCache(tmp_path, KEY)
    reopened.verify(_keys(2))
    with pytest.raises(CacheDamaged, match="row 2"):
        reopened.verify(_keys(6))


def test_records_past_the_end_of_features_mean_a_rebuild(tmp_path):
    cache = _cache_with_rows(tmp_path)
    with open(cache.features_path, "r+b") as fh:
        fh.truncate(3 * DIM * 2 + 5)
    reopened = FeatureCache(tmp_path, KEY)
    assert reopened.rebuilt and len(reopened) == 0
    reopened.add(_keys(2), _feats(_keys(2)))
    assert _read_back(tmp_path, _keys(2)).tobytes() == _feats(_keys(2)).tobytes()


def test_old_format_folder_is_not_read(tmp_path):
    old = tmp_path / fingerprint(KEY)
    old.mkdir()
    (old / "features.f16").write_bytes(b"\0" * DIM * 2)
    (old / "index.json").write_text(json.dumps({"key": fingerprint(KEY), "dim": DIM, "rows": {"0000|eval": [0, 0]}}))
    cache = FeatureCache(tmp_path, KEY)
    assert cache.dir != old and len(cache) == 0 and not cache.rebuilt


# ---- clearing while others write --------------------------------------------------------


def _looping_writer(root, keys, stop):
    cache = FeatureCache(root, KEY)
    while not stop.is_set():
        cache.refresh()
        todo = [k for k in keys if k not in cache.index][:4]
        if todo:
            cache.add(todo, _feats(todo))
        cache.array()
        time.sleep(0.002)


def test_clear_while_others_write_breaks_nobody(tmp_path):
    keys, stop = _keys(400), _mp().Event()
    children = [_mp().Process(target=_looping_writer, args=(tmp_path, keys, stop)) for _ in range(2)]
    for child in children:
        child.start()
    clearer = FeatureCache(tmp_path, KEY)
    for _ in range(5):
        time.sleep(0.15)
        clearer.refresh()
        clearer.clear()
    _wait_for_rows(tmp_path, KEY, 8, children[0])  # the writers go on after the last clear
    stop.set()
    for child in children:
        child.join(20)
    assert [child.exitcode for child in children] == [0, 0]
    cache = FeatureCache(tmp_path, KEY)
    known = sorted(cache.index)
    assert known and not cache.rebuilt
    cache.verify(known)
    assert _read_back(tmp_path, known).tobytes() == _feats(known).tobytes()


def _slow_extractor_saving(paths, root, out):
    cache, ext = _extract(TinyTrunk(delay=0.1), paths, root)
    assert ext.ok().all()
    np.save(out, np.asarray(cache.array()[ext.rows[:, 0]]))


def test_extraction_survives_another_process_clearing_the_cache(tmp_path):
    paths = _images(tmp_path / "images")
    root = tmp_path / "cache"
    child = _mp().Process(target=_slow_extractor_saving, args=(paths, root, tmp_path / "seen.npy"))
    child.start()
    _wait_for_rows(root, {"trunk": "tiny"}, 4, child)
    FeatureCache(root, {"trunk": "tiny"}).clear()
    child.join(20)
    assert child.exitcode == 0
    assert np.load(tmp_path / "seen.npy").tobytes() == _reference(paths, tmp_path / "ref").tobytes()


# ---- the file-hash memo -----------------------------------------------------------------


def _hasher(root, files, barrier):
    cache = FeatureCache(root, KEY)
    barrier.wait()
    for path in files:
        cache.file_keys([path])
        cache.save_file_hashes()


def test_file_hash_memo_keeps_every_writers_entries(tmp_path):
    files = []
    for i in range(40):
        files.append(tmp_path / "files" / f"f{i}.bin")
        files[-1].parent.mkdir(exist_ok=True)
        files[-1].write_bytes(os.urandom(64))
    barrier = _mp().Barrier(2)
    children = [_mp().Process(target=_hasher, args=(tmp_path / "cache", files[i::2], barrier)) for i in range(2)]
    assert _run(children) == [0, 0]
    memo = json.loads(FeatureCache(tmp_path / "cache", KEY).hashes_path.read_text())
    assert sorted(memo) == sorted(str(p) for p in files)


def test_corrupt_file_hash_memo_is_ignored(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(b"abc")
    cache = FeatureCache(tmp_path / "cache", KEY)
    cache.hashes_path.write_text('{"half": [1, 2')
    reopened = FeatureCache(tmp_path / "cache", KEY)
    digest = reopened.file_keys([path])[0]
    reopened.save_file_hashes()
    assert FeatureCache(tmp_path / "cache", KEY).file_keys([path]) == [digest]
    assert json.loads(cache.hashes_path.read_text())[str(path)][2] == digest


def test_second_clear_of_the_same_damage_keeps_the_rows_written_since(tmp_path):
    first, second = _cache_with_rows(tmp_path), FeatureCache(tmp_path, KEY)  # both found the same damage
    first.clear()
    first.add(_keys(3), _feats(_keys(3)))  # rebuilding already
    second.clear()  # must not throw away what `first` rebuilt
    assert sorted(second.index) == _keys(3)
    assert _read_back(tmp_path, _keys(3)).tobytes() == _feats(_keys(3)).tobytes()
    second.clear()  # now it is the cache it read: cleared
    assert len(FeatureCache(tmp_path, KEY)) == 0


def test_reader_sees_new_rows_and_its_rows_stay_valid_across_a_clear(tmp_path):
    reader = FeatureCache(tmp_path, KEY)  # opened before anything was written
    writer = _cache_with_rows(tmp_path, 4)
    assert reader.array().shape == (4, DIM)
    rows = reader.rows(_keys(4))
    writer.add(_keys(6)[4:], _feats(_keys(6)[4:]))
    assert reader.array().shape == (6, DIM)
    writer.clear()
    writer.add(["other|eval"], _feats(["other|eval"]))
    assert np.asarray(reader.array()[rows]).tobytes() == _feats(_keys(4)).tobytes()  # rows handed out still read
    reader.refresh()
    assert list(reader.index) == ["other|eval"]


# ---- byte-identical images ----------------------------------------------------------------
@pytest.mark.parametrize("batch_size", [2, 8])
def test_byte_identical_images_share_one_row_without_damage(tmp_path, batch_size):
    """Real sets hold copies of one photo (yalefaces has ten pairs): same key, in one batch or across two."""
    import shutil

    originals = _images(tmp_path / "img", 6)
    copies = [tmp_path / "img" / "copy_a.png", tmp_path / "img" / "copy_b.png"]
    shutil.copy(originals[0], copies[0])
    shutil.copy(originals[2], copies[1])
    paths = [originals[0], copies[0], *originals[1:4], copies[1], *originals[4:]]  # copy_a beside its twin
    cache, ext = _extract(TinyTrunk(), paths, tmp_path / "cache", batch_size=batch_size)
    assert ext.ok().all() and not cache.rebuilt
    assert ext.rows[1, 0] == ext.rows[0, 0] and ext.rows[5, 0] == ext.rows[paths.index(originals[2]), 0]
    assert len(cache) == 6  # one row per distinct image
    cache.verify([f"{k}|eval" for k in cache.file_keys(paths)])
