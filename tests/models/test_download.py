"""Weights from a URL the user asks for: cached, checksummed, atomic. Served from loopback only."""

import functools
import hashlib
import http.server
import threading

import pytest
import torch

from heron.errors import ModelError
from heron.models import build, download


@pytest.fixture
def served(tmp_path):
    """A tiny HTTP server on 127.0.0.1 serving tmp_path/www; stops after the test."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_download_is_checksummed_cached_and_atomic(served, tmp_path):
    root, base = served
    (root / "w.bin").write_bytes(b"weights" * 1000)
    digest = hashlib.sha256(b"weights" * 1000).hexdigest()
    dest = tmp_path / "cache" / "w.bin"
    (tmp_path / "cache").mkdir()
    dest.with_name("w.bin.part").write_bytes(b"weig")  # a previous, interrupted download
    got = download(f"{base}/w.bin", digest, dest=dest, progress=False)
    assert got.read_bytes() == b"weights" * 1000
    (root / "w.bin").unlink()  # cached: no second request needed
    assert download(f"{base}/w.bin", digest, dest=dest, progress=False) == dest


def test_checksum_mismatch_keeps_nothing(served, tmp_path):
    root, base = served
    (root / "bad.bin").write_bytes(b"tampered")
    dest = tmp_path / "bad.bin"
    with pytest.raises(ModelError, match="checksum mismatch"):
        download(f"{base}/bad.bin", "0" * 64, dest=dest, progress=False)
    assert not dest.exists() and not dest.with_name("bad.bin.part").exists()


def test_build_from_url_loads_the_weights(served, tmp_path, monkeypatch):
    root, base = served
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    source = build("resnet18", num_classes=7)
    torch.save(source.state_dict(), root / "r18.pth")
    digest = hashlib.sha256((root / "r18.pth").read_bytes()).hexdigest()
    model = build("resnet18", weights=f"{base}/r18.pth", weights_sha256=digest)
    assert all(torch.equal(a, b) for a, b in zip(source.state_dict().values(), model.state_dict().values()))
    assert (tmp_path / "xdg" / "heron" / "weights" / "r18.pth").is_file()
