"""1:K face identification: heron's FaceGallery search against a Python loop and numpy brute force, same run.

For each gallery size K (default 10k, 100k and 1M embeddings of dim 128,
random unit vectors from a fixed seed, `--per-person` embeddings per person)
the script enrols everyone into a fresh SQLite gallery in one transaction,
then times one query at a time (each query a noisy copy of an enrolled
embedding; median over the queries, after a warm-up) for:

- heron: `FaceGallery.identify` as a user calls it (one matrix product, best
  embedding per person, top k); also with FAISS forced on and off;
- a plain Python loop over the rows (lists of floats, `math.sqrt`), timed on
  the first `--loop-rows` rows and scaled linearly to K (said in the output);
- numpy brute force: `np.linalg.norm(E - q, axis=1)` over every row, then the
  best per person and the top k;
- FAISS `IndexFlatIP.search` on its own, where faiss is installed.

Every method must name the same top-k people as numpy brute force, or the
script stops. BLAS and FAISS run on `--threads` threads (default 1).

    .venv/bin/python benchmarks/identify.py [--sizes 10000 100000 1000000] [--per-person 4] [--queries 20]
"""

from __future__ import annotations

import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import machine, parse_timing_args, timing_parser  # noqa: E402

from heron.tasks.faces.gallery import FaceGallery  # noqa: E402

DIM, TOP_K = 128, 5
ENCODER = "0" * 64  # the gallery only compares hashes; any fixed one will do


def unit_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    rows = rng.standard_normal((n, DIM), dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def make_gallery(db: Path, vectors: np.ndarray, per_person: int) -> tuple[FaceGallery, float, float]:
    """A gallery holding `vectors` (person i owns rows i*per_person ...); (gallery, enrol s, first-load s)."""
    start = time.perf_counter()
    gallery = FaceGallery.open(db, ENCODER, DIM)
    gallery.enroll_many((f"person{p:07d}", vectors[r : r + per_person], ["bench"] * len(vectors[r : r + per_person]))
                        for p, r in enumerate(range(0, len(vectors), per_person)))
    enrolled = time.perf_counter()
    gallery.faiss_min_rows = math.inf  # the first read, with numpy only
    gallery.identify(vectors[0], k=TOP_K)
    return gallery, enrolled - start, time.perf_counter() - enrolled


def python_loop(rows: list[list[float]], owners: list[int], query: list[float], k: int) -> list[tuple[int, float]]:
    """What a first gallery looks like: every row, one at a time, in plain Python."""
    best: dict[int, float] = {}
    for owner, row in zip(owners, rows):
        distance = math.sqrt(sum((a - b) * (a - b) for a, b in zip(row, query)))
        if distance < best.get(owner, math.inf):
            best[owner] = distance
    return sorted(best.items(), key=lambda item: item[1])[:k]


def numpy_brute_force(vectors: np.ndarray, starts: np.ndarray, query: np.ndarray, k: int) -> list[int]:
    """np.linalg.norm over every row, best per person, top k: the people's indices, nearest first."""
    distance = np.linalg.norm(vectors - query, axis=1)  # (N,)
    best = np.minimum.reduceat(distance, starts)  # (P,)
    top = np.argpartition(best, k)[:k]
    return top[np.argsort(best[top], kind="stable")].tolist()


def median_latency(fn: Callable[[np.ndarray], object], queries: np.ndarray) -> float:
    """Median seconds of `fn(query)` over the queries, after one untimed call."""
    fn(queries[0])
    times = []
    for query in queries:
        start = time.perf_counter()
        fn(query)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def faiss_module():
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def bench_size(size: int, args, faiss, work: Path) -> dict[str, float]:
    rng = np.random.default_rng(size)
    vectors = unit_rows(rng, size)
    owners = np.arange(size) // args.per_person
    starts = np.arange(0, size, args.per_person)
    picks = rng.integers(0, size, args.queries)
    noisy = vectors[picks] + 0.03 * rng.standard_normal((args.queries, DIM), dtype=np.float32)  # another photo
    queries = noisy / np.linalg.norm(noisy, axis=1, keepdims=True)
    slow = queries[: args.slow_queries]

    gallery, enrol_s, load_s = make_gallery(work / f"g{size}.db", vectors, args.per_person)
    expected = [numpy_brute_force(vectors, starts, q, TOP_K) for q in slow]
    names = [[f"person{p:07d}" for p in people] for people in expected]

    def heron_numpy(q):
        return gallery.identify(q, k=TOP_K)

    times = {"heron": median_latency(heron_numpy, queries)}
    answers = {"heron": [[n for n, _ in gallery.identify(q, k=TOP_K)] for q in slow]}
    times["brute"] = median_latency(lambda q: numpy_brute_force(vectors, starts, q, TOP_K), slow)

    subset = min(size, args.loop_rows)
    rows, owner_list = vectors[:subset].tolist(), owners[:subset].tolist()
    times["loop"] = median_latency(lambda q: python_loop(rows, owner_list, q.tolist(), TOP_K), slow) * size / subset
    if size <= args.loop_rows:  # the loop's own answer is checked where it ran on every row
        answers["loop"] = [[f"person{p:07d}" for p, _ in python_loop(rows, owner_list, q.tolist(), TOP_K)]
                           for q in slow]
    if faiss is not None:
        gallery.faiss_min_rows = 0
        times["heron_faiss"] = median_latency(heron_numpy, queries)
        answers["heron_faiss"] = [[n for n, _ in gallery.identify(q, k=TOP_K)] for q in slow]
        index = faiss.IndexFlatIP(DIM)
        index.add(vectors)
        times["faiss"] = median_latency(lambda q: index.search(q[None, :], TOP_K * args.per_person), queries)
    for method, got in answers.items():
        if got != names:
            raise SystemExit(f"{method} named other people than numpy brute force at {size} embeddings")
    gallery.close()
    print(f"{size:>9,} embeddings, {len(starts):>7,} people: enrolled in {enrol_s:6.2f}s (one transaction), "
          f"matrix read in {load_s:5.2f}s (once); same top-{TOP_K} people as brute force: yes")
    return times


def main() -> None:
    parser = timing_parser(__doc__, threads=1)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--per-person", type=int, default=4, help="embeddings per person (default %(default)s)")
    parser.add_argument("--queries", type=int, default=20, help="queries timed per method (default %(default)s)")
    parser.add_argument("--slow-queries", type=int, default=5,
                        help="queries for the Python loop and brute force (default %(default)s)")
    parser.add_argument("--loop-rows", type=int, default=20_000,
                        help="rows the Python loop is timed on before scaling to K (default %(default)s)")
    args = parse_timing_args(parser)
    from threadpoolctl import threadpool_limits

    faiss = faiss_module()
    if faiss is not None:
        faiss.omp_set_num_threads(args.threads or 1)
    with threadpool_limits(limits=args.threads or 1), tempfile.TemporaryDirectory() as tmp:
        print(machine())
        print(f"dim {DIM}, top {TOP_K}, {args.per_person} embeddings per person, median latency of one query; "
              f"BLAS/FAISS threads {args.threads or 1}; faiss {'installed' if faiss else 'not installed'}")
        results = {size: bench_size(size, args, faiss, Path(tmp)) for size in args.sizes}
    print(f"\nPython loop timed on the first {args.loop_rows:,} rows and scaled linearly to K.")
    print("heron = FaceGallery.identify with numpy (the default below 100k); heron+faiss = the same with its FAISS "
          "index (the default from 100k); ratios are against heron.")
    header = f"{'K':>9} {'heron':>9} {'numpy brute':>12} {'Python loop':>12}"
    header += f" {'heron+faiss':>12} {'faiss alone':>12}" if faiss else ""
    print(header + f" {'loop/heron':>11} {'brute/heron':>12}" + (f" {'faiss/heron':>12}" if faiss else ""))
    for size, t in results.items():
        line = f"{size:>9,} {t['heron'] * 1e3:>7.2f}ms {t['brute'] * 1e3:>10.2f}ms {t['loop'] * 1e3:>10.0f}ms"
        if faiss:
            line += f" {t['heron_faiss'] * 1e3:>10.2f}ms {t['faiss'] * 1e3:>10.2f}ms"
        line += f" {t['loop'] / t['heron']:>10.0f}x {t['brute'] / t['heron']:>11.1f}x"
        print(line + (f" {t['heron_faiss'] / t['heron']:>11.2f}x" if faiss else ""))


if __name__ == "__main__":
    main()
