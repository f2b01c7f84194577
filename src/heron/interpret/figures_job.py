"""A run's figures, drawn from a small job file, in this process or in a background one.

Drawing the PNGs of a run (training history, confusion matrix, top losses,
class balance, learning-rate finder) costs more than a warm training run:
matplotlib's import, the renders, and decoding the top-loss photos. So a run
writes what the figures need into `run_dir/.figures-job.json` (numbers, class
names and the top-loss files as path/label/pred/prob/loss, never pixels) and
either draws them at once (`render_job`, "inline") or hands the file to
`python -m heron.interpret.figures_job JOB` (`start_background`), which
decodes the photos itself, writes each PNG atomically, fills the figures
into the run's `report.html`, and deletes the job file last: a run folder
without `.figures-job.json` has all its figures. `wait_for_figures(run_dir)`
waits for that.

A figure that fails is logged to `run_dir/figures.log` and skipped; it never
takes another figure, the report or any other file of the run with it. The
log is removed again when it stays empty.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import traceback
from pathlib import Path

import heron
from heron._atomic import atomic_write_json, atomic_write_text

__all__ = [
    "JOB_NAME",
    "LOG_NAME",
    "FiguresJob",
    "planned_figures",
    "refresh_report",
    "render_job",
    "start_background",
    "figures_pending",
    "wait_for_figures",
    "main",
]

JOB_NAME = ".figures-job.json"
LOG_NAME = "figures.log"
TOP_LOSSES = 12

# (file, caption) in the order the report shows them.
_FIGURES = (
    ("history.png", "Loss and accuracy per epoch"),
    ("confusion.png", "Confusion matrix (validation)"),
    ("top_losses.png", "Top losses: the validation images the model got most wrong"),
    ("class_balance.png", "Images per class"),
    ("lr_find.png", "Learning-rate finder"),
)
_CAPTIONS = dict(_FIGURES)


def _wanted(job: dict) -> list[str]:
    """File names the job asks for, in report order."""
    names = []
    if job.get("history"):
        names.append("history.png")
    if job.get("confusion") is not None:
        names.append("confusion.png")
        if job.get("top_losses"):
            names.append("top_losses.png")
    names.append("class_balance.png")
    if job.get("lr_find") is not None:
        names.append("lr_find.png")
    return names


def planned_figures(job: dict) -> list[tuple[str, str]]:
    """(caption, file name) of every figure the job will draw, for the report."""
    return [(_CAPTIONS[name], name) for name in _wanted(job)]


# ---------------------------------------------------------------- drawing


def _top_loss_images(items: list[dict], pre: dict | None) -> list[dict]:
    """The top-loss items with their photos decoded at the network's view; unreadable files skipped."""
    from heron.data.images import load_image
    from heron.data.transforms import Preprocessing, eval_transform
    from heron.errors import ImageError

    preprocessing = Preprocessing.from_dict(pre) if pre else Preprocessing()
    show = eval_transform(preprocessing)
    shown = []
    for item in items:
        try:
            image = show(load_image(item["path"], min_size=preprocessing.decode_min_size()))
        except ImageError:
            continue
        shown.append({**{k: v for k, v in item.items() if k != "path"}, "image": image})
    return shown


def _draw(name: str, job: dict, path: Path) -> bool:
    """Draw one figure to `path`; False when there is nothing to draw (no readable top-loss photo)."""
    from heron.interpret import plots

    if name == "history.png":
        plots.plot_history(job["history"], path)
    elif name == "confusion.png":
        plots.plot_confusion(job["confusion"], job["classes"], path)
    elif name == "top_losses.png":
        items = _top_loss_images(job["top_losses"], job.get("preprocessing"))
        if not items:
            return False
        plots.plot_top_losses(items, path)
    elif name == "class_balance.png":
        plots.plot_class_balance(job.get("class_counts") or {}, path)
    elif name == "lr_find.png":
        lr = job["lr_find"]
        plots.plot_lr_find(lr["lrs"], lr["losses"], lr.get("suggestion"), path)
    else:
        raise ValueError(f"unknown figure {name!r}")
    return True


def _log(run_dir: Path, text: str) -> None:
    with open(run_dir / LOG_NAME, "a", encoding="utf-8") as fh:
        fh.write(text.rstrip("\n") + "\n")


def render_job(job: dict, run_dir: str | os.PathLike) -> list[tuple[str, str]]:
    """Draw every figure of `job` into `run_dir`; (caption, file name) of those written.

    A figure that raises is logged to `figures.log` with its traceback and
    left out; the others are still drawn.
    """
    run_dir = Path(run_dir)
    written = []
    for name in _wanted(job):
        try:
            if _draw(name, job, run_dir / name):
                written.append((_CAPTIONS[name], name))
        except Exception:  # one broken figure must not cost the others
            _log(run_dir, f"{name}: not drawn\n{traceback.format_exc()}")
    return written


_FIGURES_SECTION = re.compile(r'(<section id="figures"><h2>[^<]*</h2>)(.*?)(</section>)', re.S)


def refresh_report(run_dir: str | os.PathLike, figures: list[tuple[str, str]]) -> bool:
    """Re-draw the figures section of `run_dir/report.html` once the PNGs are there; False if it has none.

    The section is the report's own, as if the PNGs had been there when it was written.
    """
    from heron.interpret.report import figures_html

    path = Path(run_dir) / "report.html"
    try:
        page = path.read_text(encoding="utf-8")
    except OSError:
        return False
    section = figures_html(Path(run_dir), figures)
    updated, count = _FIGURES_SECTION.subn(lambda m: m.group(1) + section + m.group(3), page, count=1)
    if count:
        atomic_write_text(path, updated)
    return bool(count)


def _remove_empty_log(run_dir: Path) -> None:
    log = run_dir / LOG_NAME
    try:
        if log.stat().st_size == 0:
            log.unlink()
    except OSError:
        pass


def run_job_file(job_path: str | os.PathLike) -> int:
    """Draw the figures of a job file, fill them into the report, then delete the job file.

    Returns 0, or 1 when something went wrong (it is in figures.log).
    """
    job_path = Path(job_path)
    run_dir = job_path.parent
    try:
        job = json.loads(job_path.read_text(encoding="utf-8"))
        refresh_report(run_dir, render_job(job, run_dir))
    except Exception:
        _log(run_dir, f"figures job {job_path.name} failed\n{traceback.format_exc()}")
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        _remove_empty_log(run_dir)  # before the done marker, so a waiter never sees a stale empty log
        try:
            job_path.unlink()  # the done marker: no job file, nothing pending
        except OSError:
            pass
    return 1 if (run_dir / LOG_NAME).exists() else 0


# ---------------------------------------------------------------- background


class FiguresJob:
    """A background figures process of one run folder."""

    def __init__(self, run_dir: Path, process: subprocess.Popen | None) -> None:
        self.run_dir, self.process = run_dir, process

    @property
    def done(self) -> bool:
        return not figures_pending(self.run_dir)

    def wait(self, timeout: float | None = 60.0) -> bool:
        """Block until the figures are written (True) or `timeout` seconds pass (False)."""
        if self.process is not None:
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                return False
        return self.done


_BOOT = (
    "import sys; root = sys.argv.pop(1)\n"
    "if root not in sys.path: sys.path.insert(0, root)\n"
    "from heron.interpret.figures_job import main; sys.exit(main())"
)


def start_background(job: dict, run_dir: str | os.PathLike) -> FiguresJob:
    """Write the job file and start the process that draws it; returns at once.

    The process runs in its own session (it outlives the command that started
    it and ignores that terminal's Ctrl-C), single-threaded and niced, with
    stdout and stderr in `run_dir/figures.log`.
    """
    run_dir = Path(run_dir).resolve()
    job_path = atomic_write_json(run_dir / JOB_NAME, job)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MPLBACKEND="Agg")
    # The worker imports this same heron, even when it was put on sys.path at run time.
    root = str(Path(heron.__file__).resolve().parent.parent)
    try:
        with open(run_dir / LOG_NAME, "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-c", _BOOT, root, str(job_path)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                cwd=str(run_dir), start_new_session=True,
            )
    except OSError:
        job_path.unlink(missing_ok=True)  # nothing will draw it: the figures must not look pending for good
        raise
    return FiguresJob(run_dir, process)


def figures_pending(run_dir: str | os.PathLike) -> bool:
    """True while a figures job of `run_dir` has not finished."""
    return (Path(run_dir) / JOB_NAME).exists()


def wait_for_figures(run_dir: str | os.PathLike, timeout: float = 60.0, poll: float = 0.05) -> bool:
    """Wait until `run_dir`'s figures are all written: True, or False after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while figures_pending(run_dir):
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll)
    return True


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m heron.interpret.figures_job RUN_DIR/.figures-job.json", file=sys.stderr)
        return 2
    try:
        os.nice(5)  # figures wait for whatever the user runs next
    except (AttributeError, OSError):
        pass
    import torch

    torch.set_num_threads(1)
    return run_job_file(argv[0])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
