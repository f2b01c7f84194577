"""The enrolment database: round trip, exact search against brute force, crash safety, concurrency, FAISS."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from heron.errors import DataError
from heron.tasks.faces.gallery import FaceGallery

HASH = "a1b2c3d4e5f6" + "0" * 52
OTHER_HASH = "ffeeddccbbaa" + "1" * 52
DIM = 16


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    v = rng.normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def brute_force(people: dict[str, np.ndarray], query: np.ndarray, k: int) -> list[tuple[str, float]]:
    """Best Euclidean distance per person by np.linalg.norm over every row, nearest k first."""
    best = {name: float(np.linalg.norm(rows - query, axis=1).min()) for name, rows in people.items()}
    return sorted(best.items(), key=lambda item: item[1])[:k]


def assert_same_answers(got, expected, atol=1e-3):
    assert [name for name, _ in got] == [name for name, _ in expected]
    np.testing.assert_allclose([d for _, d in got], [d for _, d in expected], atol=atol)


def db_state(db: Path) -> dict:
    """What an independent sqlite3 connection sees: integrity, people with counts, orphan rows."""
    con = sqlite3.connect(db)
    try:
        return {
            "integrity": con.execute("PRAGMA integrity_check").fetchone()[0],
            "journal_mode": con.execute("PRAGMA journal_mode").fetchone()[0],
            "meta": dict(con.execute("SELECT key, value FROM meta WHERE key != 'created'")),
            "foreign_key_violations": con.execute("PRAGMA foreign_key_check").fetchall(),
            "people": dict(con.execute("SELECT p.name, COUNT(e.id) FROM people p "
                                       "LEFT JOIN embeddings e ON e.person_id = p.id GROUP BY p.id")),
            "orphans": con.execute("SELECT COUNT(*) FROM embeddings "
                                   "WHERE person_id NOT IN (SELECT id FROM people)").fetchone()[0],
            "rows": con.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0],
        }
    finally:
        con.close()


def test_round_trip_enroll_verify_identify_remove(tmp_path):
    rng = np.random.default_rng(0)
    people = {"alice": unit(rng, 3), "bob": unit(rng, 2), "carol": unit(rng, 4)}
    db = tmp_path / "faces.db"
    with FaceGallery.open(db, HASH, DIM) as gallery:
        for name, rows in people.items():
            assert gallery.enroll(name, rows, [f"{name}/{i}.png" for i in range(len(rows))]) == len(rows)
        assert gallery.enroll("bob", unit(rng, 1) * 3.0, ["bob/extra.png"]) == 1  # stored as a unit vector
        people["bob"] = np.concatenate([people["bob"], gallery._as_matrix(_blobs(db, "bob"))[-1:]])
        assert gallery.people() == [("alice", 3), ("bob", 3), ("carol", 4)]
        assert gallery.people_count() == 3 and len(gallery) == 10 and "bob" in gallery and "dave" not in gallery
    state = db_state(db)
    assert state["integrity"] == "ok" and state["journal_mode"] == "wal"
    assert state["meta"] == {"encoder_hash": HASH, "dim": str(DIM), "schema_version": "1"}

    with FaceGallery.open(db, HASH, DIM) as gallery:  # everything came back from the file
        probe = people["carol"][2] + 0.05 * unit(rng, 1)[0]
        probe /= np.linalg.norm(probe)
        top = gallery.identify(probe, k=5)
        assert_same_answers(top, brute_force(people, probe, 5))
        assert top[0][0] == "carol" and len(top) == 3
        assert gallery.identify(people["alice"][1], k=1) == [("alice", pytest.approx(0.0, abs=2e-3))]
        for name in people:
            expected = float(np.linalg.norm(people[name] - probe, axis=1).min())
            assert gallery.verify(name, probe) == pytest.approx(expected, abs=1e-3)
        with pytest.raises(DataError, match="no one named 'dave'"):
            gallery.verify("dave", probe)

        assert gallery.remove("carol") == 4
        assert gallery.remove("carol") == 0
        assert gallery.people() == [("alice", 3), ("bob", 3)]
        del people["carol"]
        assert_same_answers(gallery.identify(probe, k=5), brute_force(people, probe, 5))
    state = db_state(db)
    assert state["rows"] == 6 and state["orphans"] == 0  # ON DELETE CASCADE removed carol's embeddings


def _blobs(db: Path, name: str) -> list[bytes]:
    con = sqlite3.connect(db)
    try:
        return [r[0] for r in con.execute("SELECT e.vector FROM embeddings e JOIN people p ON p.id = e.person_id "
                                          "WHERE p.name = ? ORDER BY e.id", (name,))]
    finally:
        con.close()


def test_identify_equals_brute_force_on_many_people(tmp_path):
    rng = np.random.default_rng(1)
    people = {f"p{i:03d}": unit(rng, int(rng.integers(1, 6))) for i in range(120)}
    with FaceGallery.open(tmp_path / "g.db", HASH, DIM) as gallery:
        gallery.enroll_many((name, rows, ["x"] * len(rows)) for name, rows in people.items())
        for query in [*unit(rng, 5), people["p017"][0]]:
            for k in (1, 5, 200):
                assert_same_answers(gallery.identify(query, k=k), brute_force(people, query, k))


def test_sees_what_another_connection_enrolled(tmp_path):
    rng = np.random.default_rng(2)
    db = tmp_path / "g.db"
    with FaceGallery.open(db, HASH, DIM) as reader, FaceGallery.open(db, HASH, DIM) as writer:
        writer.enroll("alice", unit(rng, 2), ["a", "b"])
        probe = unit(rng, 1)[0]
        assert [n for n, _ in reader.identify(probe)] == ["alice"]  # the matrix is now loaded
        writer.enroll("bob", probe[None], ["c"])
        assert reader.identify(probe, k=1)[0][0] == "bob"  # ... and read again after the other's commit
        reader.remove("bob")
        assert [n for n, _ in reader.identify(probe)] == ["alice"]  # ... and after its own


def test_opening_listing_and_searching_do_not_wait_for_a_writer(tmp_path, monkeypatch):
    import heron.tasks.faces.gallery as gallery_module

    rng = np.random.default_rng(6)
    db = tmp_path / "g.db"
    with FaceGallery.open(db, HASH, DIM) as gallery:
        gallery.enroll("alice", unit(rng, 2), ["a", "b"])
    monkeypatch.setattr(gallery_module, "BUSY_TIMEOUT_S", 0.2)  # waiting for the lock would fail fast
    writer = sqlite3.connect(db, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # another process in the middle of a long enrolment
    writer.execute("INSERT INTO people (name, created) VALUES ('bob', 'now')")
    try:
        with FaceGallery.open(db, HASH, DIM) as gallery:
            assert gallery.people() == [("alice", 2)]  # the last committed state
            assert gallery.identify(unit(rng, 1)[0], k=1)[0][0] == "alice"
            with pytest.raises(DataError, match="another process kept the database busy"):  # a writer waits
                gallery.enroll("carol", unit(rng, 1), ["c"])
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_other_encoder_or_size_refused_with_the_fix(tmp_path):
    db = tmp_path / "faces.db"
    with FaceGallery.open(db, HASH, DIM) as gallery:
        gallery.enroll("alice", unit(np.random.default_rng(0), 1), ["a.png"])
    with pytest.raises(DataError) as err:
        FaceGallery.open(db, OTHER_HASH, DIM)
    message = str(err.value)
    assert str(db) in message and HASH[:12] in message and OTHER_HASH[:12] in message
    assert "use the run that made this database, or a new --db" in message and "\n" not in message
    with pytest.raises(DataError, match=r"16-d embeddings, but this run makes 32-d"):
        FaceGallery.open(db, HASH, 32)
    with FaceGallery.open(db) as gallery:  # list/remove need no run
        assert gallery.people() == [("alice", 1)] and gallery.encoder_hash == HASH


def test_files_that_are_not_a_gallery_are_refused(tmp_path):
    junk = tmp_path / "photo.jpg"
    junk.write_bytes(os.urandom(4096))
    with pytest.raises(DataError, match="cannot be read as an enrolment database"):
        FaceGallery.open(junk, HASH, DIM)
    other = tmp_path / "other.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE notes (x)")
    con.commit()
    con.close()
    with pytest.raises(DataError, match="not a heron faces enrolment database"):
        FaceGallery.open(other, HASH, DIM)
    with pytest.raises(DataError, match="no such enrolment database"):
        FaceGallery.open(tmp_path / "missing.db")
    with pytest.raises(DataError, match="no such enrolment database"):
        FaceGallery.open(tmp_path / "missing.db", HASH, DIM, create=False)
    assert not (tmp_path / "missing.db").exists()


def test_a_failure_inside_the_transaction_writes_nothing(tmp_path):
    rng = np.random.default_rng(3)

    def sources():
        yield "ok.png"
        raise RuntimeError("disk on fire")

    class Failing(list):
        __iter__ = staticmethod(sources)

    with FaceGallery.open(tmp_path / "g.db", HASH, DIM) as gallery:
        gallery.enroll("alice", unit(rng, 1), ["a.png"])
        with pytest.raises(RuntimeError, match="disk on fire"):
            gallery.enroll("bob", unit(rng, 2), Failing([None, None]))
        with pytest.raises(ValueError, match="one source each"):
            gallery.enroll_many([("carol", unit(rng, 2), ["c"] * 2), ("dave", unit(rng, 2), ["d"])])
        with pytest.raises(ValueError, match="this gallery holds"):
            gallery.enroll("erin", unit(rng, 2, dim=8), ["e"] * 2)
        assert gallery.people() == [("alice", 1)]
    assert db_state(tmp_path / "g.db")["rows"] == 1


# The child enrols `carol` with 400 rows; after 200 of them it reports from inside the
# transaction (the sources iterator is consumed row by row by the INSERT) and sleeps.
_KILLED_ENROLMENT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import numpy as np
    from heron.tasks.faces.gallery import FaceGallery

    db, ready, hash_, dim = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])

    class Stalling(list):
        def __iter__(self):
            for i, item in enumerate(list.__iter__(self)):
                if i == 200:
                    ready.write_text("inside the transaction")
                    time.sleep(120)
                yield item

    rng = np.random.default_rng(0)
    gallery = FaceGallery.open(db, hash_, dim)
    gallery.enroll("carol", rng.normal(size=(400, dim)), Stalling(f"carol/{i}.png" for i in range(400)))
    print("finished", flush=True)
""")


def test_sigkill_mid_enrolment_leaves_no_half_written_person(tmp_path):
    db, ready = tmp_path / "faces.db", tmp_path / "ready"
    rng = np.random.default_rng(4)
    with FaceGallery.open(db, HASH, DIM) as gallery:
        gallery.enroll("alice", unit(rng, 5), [f"a{i}" for i in range(5)])
    child = subprocess.Popen([sys.executable, "-c", _KILLED_ENROLMENT, str(db), str(ready), HASH, str(DIM)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert ready.exists(), child.communicate()[1].decode()
        probe = sqlite3.connect(db, timeout=0)  # the child holds the write lock: it is inside its transaction
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            probe.execute("BEGIN IMMEDIATE")
        probe.close()
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        out, _ = child.communicate()
    assert child.returncode == -signal.SIGKILL and b"finished" not in out

    state = db_state(db)
    assert state["integrity"] == "ok" and state["foreign_key_violations"] == []
    assert state["people"] == {"alice": 5} and state["orphans"] == 0 and state["rows"] == 5
    with FaceGallery.open(db, HASH, DIM) as gallery:  # usable again: the lock died with the child
        assert gallery.enroll("carol", unit(rng, 3), ["c"] * 3) == 3
        assert gallery.people() == [("alice", 5), ("carol", 3)]


def _enrol_many_small(db: str, worker: int, rounds: int, start) -> None:
    """One process: open the (perhaps not yet created) file, then many one-person transactions."""
    rng = np.random.default_rng(100 + worker)
    start.wait()
    with FaceGallery.open(db, HASH, DIM) as gallery:
        for i in range(rounds):
            gallery.enroll(f"w{worker}-{i:03d}", unit(rng, 2), ["x", "y"])
            gallery.enroll("shared", unit(rng, 1), [f"w{worker}-{i}"])  # both add to one person


def test_two_processes_enrolling_at_once_lose_nothing(tmp_path):
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("needs the fork start method")
    context = multiprocessing.get_context("fork")
    db, rounds = str(tmp_path / "faces.db"), 40
    start = context.Barrier(2)
    workers = [context.Process(target=_enrol_many_small, args=(db, w, rounds, start)) for w in range(2)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(120)
    assert [p.exitcode for p in workers] == [0, 0]
    state = db_state(db)
    expected = {f"w{w}-{i:03d}": 2 for w in range(2) for i in range(rounds)} | {"shared": 2 * rounds}
    assert state["people"] == expected and state["rows"] == 6 * rounds
    assert state["integrity"] == "ok" and state["orphans"] == 0


def test_faiss_index_gives_the_same_answers_as_numpy(tmp_path):
    pytest.importorskip("faiss", reason="faiss-cpu not installed (pip install faiss-cpu)")
    rng = np.random.default_rng(5)
    people = {f"p{i:04d}": unit(rng, int(rng.integers(1, 12)), dim=64) for i in range(350)}  # ~2k rows
    db = tmp_path / "g.db"
    with FaceGallery.open(db, HASH, 64) as exact:
        exact.enroll_many((name, rows, ["x"] * len(rows)) for name, rows in people.items())
        with FaceGallery.open(db, HASH, 64) as indexed:
            indexed.faiss_min_rows = 1000
            assert len(indexed) > 1000 and indexed.search_backend == "faiss" and exact.search_backend == "numpy"
            for query in [*unit(rng, 8, dim=64), people["p0123"][0]]:
                for k in (1, 5, 50):
                    got = indexed.identify(query, k=k)
                    assert_same_answers(got, exact.identify(query, k=k), atol=1e-5)
                    assert_same_answers(got, brute_force(people, query, k))
