"""Serving throughput: `heron serve` under 1, 4 and 16 concurrent clients vs `heron predict` per image.

Both sides answer the same question for the same photos with the same run
and the same engine (torch fp32) and thread count: the top-k labels of one
uploaded image. The service is `heron serve RUN` in its own process, on
loopback, each client a thread posting photos one after the other over a
kept-alive connection. The baseline is what a script without the service
does: run `heron predict --model RUN PHOTO --json` as a subprocess for each
image (its interpreter start, imports and model load included), with as
many subprocesses at a time as there are clients (up to --baseline-max).
Prints requests/s and p50/p95 latency per level and the ratio of the two.

Without --run, a run is trained first: EfficientNet-Lite0 (ImageNet weights)
at 224x224 on 24 synthetic 640x480 photos, 3 epochs of the head (seconds).
Each level is bounded by a request count and a duration.

    .venv/bin/python benchmarks/serve.py [--run RUN] [--clients 1 4 16] [--requests 48]
                                         [--baseline-requests 2] [--seconds 40] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

HERON = [sys.executable, "-m", "heron.cli"]


def synthetic_photos(folder: Path, count: int, seed: int, size=(640, 480)) -> list[Path]:
    """JPEGs of three colour classes with some structure, `folder/<class>/<i>.jpg`."""
    rng = np.random.default_rng(seed)
    colours = {"red": (200, 40, 40), "green": (40, 180, 60), "blue": (40, 60, 200)}
    paths = []
    for i in range(count):
        name = list(colours)[i % 3]
        pixels = np.array(colours[name], np.float32) + rng.normal(0, 40, size=(size[1], size[0], 3))
        y, x = rng.integers(0, size[1] // 2), rng.integers(0, size[0] // 2)
        pixels[y:, x:] *= 0.6
        path = folder / name / f"{name}_{i}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


def train_run(root: Path, threads: int) -> Path:
    """A quick EfficientNet-Lite0 run on synthetic photos (the same command a user types)."""
    data = root / "data"
    for split, count, seed in (("train", 18, 0), ("valid", 6, 1)):
        synthetic_photos(data / split, count, seed)
    out = root / "run"
    subprocess.run(HERON + ["--threads", str(threads), "train", str(data), "--out", str(out), "--epochs", "3",
                            "--engine", "torch", "--figures", "none", "--quiet"], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_service(run: Path, threads: int, port: int, engine: str) -> subprocess.Popen:
    """`heron serve` in its own process; returns once /health answers."""
    import httpx

    process = subprocess.Popen(HERON + ["--threads", str(threads), "serve", str(run), "--port", str(port),
                                        "--engine", engine, "--max-queue", "64"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"heron serve exited: {process.stderr.read()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("heron serve did not answer /health within 180 s")


def run_level(clients: int, requests: int, seconds: float, one_request) -> dict:
    """`clients` threads calling `one_request(i)` until `requests` are done or `seconds` pass."""
    lock, latencies, failures = threading.Lock(), [], []
    counter = iter(range(requests))
    stop_at = time.monotonic() + seconds

    def client() -> None:
        state = {}
        while time.monotonic() < stop_at:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            start = time.perf_counter()
            ok = one_request(i, state)
            elapsed = time.perf_counter() - start
            with lock:
                (latencies if ok else failures).append(elapsed)

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    ordered = sorted(latencies)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))] if ordered else float("nan")
    return {"clients": clients, "done": len(latencies), "failed": len(failures), "wall": wall,
            "rps": len(latencies) / wall if wall else 0.0,
            "p50": statistics.median(ordered) if ordered else float("nan"), "p95": p95}


def service_request(port: int, photos: list[Path]):
    import httpx

    payloads = [(p.name, p.read_bytes()) for p in photos]

    def one(i: int, state: dict) -> bool:
        client = state.setdefault("client", httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120))
        name, data = payloads[i % len(payloads)]
        answer = client.post("/predict", files={"file": (name, data, "image/jpeg")})
        return answer.status_code == 200 and bool(answer.json()["predictions"])

    return one


def served_level(port: int, clients: int, args: argparse.Namespace, photos: list[Path]) -> dict:
    """One level against the service, with the mean batch the worker ran (from /health's counters)."""
    import httpx

    def counts() -> dict:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=30).json()["queue"]

    before = counts()
    row = run_level(clients, args.requests, args.seconds, service_request(port, photos))
    after = counts()
    row["batch"] = (after["completed"] - before["completed"]) / max(1, after["batches"] - before["batches"])
    return row


def predict_request(run: Path, photos: list[Path], threads: int):
    def one(i: int, state: dict) -> bool:
        done = subprocess.run(HERON + ["--threads", str(threads), "predict", "--model", str(run), "--engine", "torch",
                                       "--json", str(photos[i % len(photos)])], capture_output=True, text=True)
        return done.returncode == 0 and '"predictions"' in done.stdout

    return one


def show(label: str, row: dict) -> None:
    print(f"  {label:<26} clients {row['clients']:>2}: {row['rps']:7.2f} req/s   p50 {1000 * row['p50']:8.1f} ms   "
          f"p95 {1000 * row['p95']:8.1f} ms   ({row['done']} ok, {row['failed']} failed, {row['wall']:.1f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a run folder (default: train a quick EfficientNet-Lite0 run)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--requests", type=int, default=48, help="requests per level for the service")
    parser.add_argument("--baseline-requests", type=int, default=2,
                        help="heron predict calls per concurrent subprocess, per level (default %(default)s)")
    parser.add_argument("--baseline-max", type=int, default=4,
                        help="most heron predict processes at a time (more would only thrash the cores)")
    parser.add_argument("--seconds", type=float, default=40.0, help="longest a level may run")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the service and of each predict")
    parser.add_argument("--engine", default="torch", help="the service's engine (default torch, as predict's)")
    args = parser.parse_args()

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        run = args.run or train_run(root, args.threads)
        photos = synthetic_photos(root / "photos", 16, seed=7)
        port = free_port()
        service = start_service(run, args.threads, port, args.engine)
        try:
            served = [served_level(port, c, args, photos) for c in args.clients]
        finally:
            service.terminate()
            service.wait(30)
        baseline = {}
        for clients in sorted({min(c, args.baseline_max) for c in args.clients}):
            baseline[clients] = run_level(clients, args.baseline_requests * clients, args.seconds,
                                          predict_request(run, photos, args.threads))
    load_after = os.getloadavg()

    print(f"machine: {os.cpu_count()} cores, {args.threads} torch thread(s) per process, load average "
          f"{load_before[0]:.2f} before, {load_after[0]:.2f} after; photos 640x480 JPEG; run {run.name}")
    for row in served:
        base = baseline[min(row["clients"], args.baseline_max)]
        show(f"heron serve (batch {row['batch']:.1f})", row)
        show("heron predict subprocess", base)
        ratio = row["rps"] / base["rps"] if base["rps"] else float("inf")
        print(f"  ratio serve / predict-per-image at {row['clients']} clients: {ratio:.1f}x")


if __name__ == "__main__":
    main()
