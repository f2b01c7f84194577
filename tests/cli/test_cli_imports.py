"""`heron --help` and argument parsing answer without importing torch.

Each check runs in a fresh interpreter, since the test process itself has
torch loaded, and reads `sys.modules` after the call.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "torchvision", "numpy", "matplotlib", "PIL", "sklearn", "safetensors", "sqlite3", "av", "cv2",
         "fastapi", "starlette", "uvicorn", "onnx", "onnxruntime")


def _loaded_after(code: str) -> dict:
    """Run `code` in a new interpreter; which HEAVY modules it left loaded, and what it printed."""
    script = (
        "import contextlib, io, json, sys\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):\n"
        + "".join(f"    {line}\n" for line in code.splitlines())
        + f"print(json.dumps({{'loaded': [m for m in {HEAVY!r} if m in sys.modules], 'out': out.getvalue()}}))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_parsing_every_command_line_imports_nothing_heavy():
    code = (
        "from heron.cli import build_parser\n"
        "parser = build_parser()\n"
        "parser.parse_args(['train', 'x', '--epochs', '2', '--unfreeze', 'all'])\n"
        "parser.parse_args(['predict', 'a.jpg'])\n"
        "parser.parse_args(['summary', 'vgg16'])\n"
        "parser.parse_args(['scratch', 'lenet'])\n"
        "parser.parse_args(['demo'])\n"
        "parser.parse_args(['detect', 'train', 'x', '--size', '416', '--anchors', '5'])\n"
        "parser.parse_args(['detect', 'predict', 'run', 'a.jpg', '-o', 'out'])\n"
        "parser.parse_args(['landmarks', 'x', '--points', 'p.csv'])\n"
        "parser.parse_args(['faces', 'train', 'people', '--loss', 'contrastive', '--crop-faces'])\n"
        "parser.parse_args(['faces', 'enroll', 'run', '--db', 'f.db', 'alice', 'a.png', 'b/'])\n"
        "parser.parse_args(['faces', 'verify', 'run', '--db', 'f.db', 'alice', 'a.png', '--liveness', 'gate'])\n"
        "parser.parse_args(['faces', 'identify', 'run', '--db', 'f.db', 'a.png', '--top-k', '3', '--json'])\n"
        "parser.parse_args(['faces', 'list', '--db', 'f.db'])\n"
        "parser.parse_args(['faces', 'remove', '--db', 'f.db', 'alice'])\n"
        "parser.parse_args(['faces', 'liveness', 'train', 'data', '--frames-per-video', '4', '--unfreeze', 'all'])\n"
        "parser.parse_args(['faces', 'liveness', 'predict', 'run', 'a.png', '--threshold', '0.7'])\n"
        "parser.parse_args(['export', 'run', '--format', 'onnx', '-o', 'm.onnx'])\n"
        "parser.parse_args(['serve', 'run', '--host', '0.0.0.0', '--port', '0'])\n"
        "parser.parse_args(['series', 'train', 'x.tsv', '--test', 'y.tsv', '--model', 'gru'])\n"
        "parser.parse_args(['series', 'predict', 'run', 'y.tsv'])\n"
        "parser.parse_args(['text', 'train', 'x.csv', '--epochs', '2'])\n"
        "parser.parse_args(['tag', 'predict', 'run', 'a b'])\n"
        "parser.parse_args(['lm', 'train', 'book.txt', '--cell', 'gru'])\n"
        "parser.parse_args(['lm', 'sample', 'run', '-n', '20'])\n"
        "parser.parse_args(['translate', 'demo'])\n"
        "parser.parse_args(['style', 'a.jpg', 'b.jpg', '-o', 'out.png'])"
    )
    assert _loaded_after(code)["loaded"] == []


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["predict", "--help"], ["summary", "--help"],
                                  ["demo", "--help"], ["scratch", "rnn", "--help"], []])
def test_help_imports_no_torch(argv):
    code = (
        "from heron.cli import main\n"
        "try:\n"
        f"    code = main({argv!r})\n"
        "except SystemExit as exit:\n"
        "    code = exit.code\n"
        "print('exit', code)"
    )
    result = _loaded_after(code)
    assert result["loaded"] == []
    assert "usage: heron" in result["out"]
    assert result["out"].rstrip().endswith("exit 0" if argv else "exit 2")


def test_python_dash_m_heron_cli_help():
    done = subprocess.run([sys.executable, "-m", "heron.cli", "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "usage: heron" in done.stdout
    for command in ("train", "predict", "summary", "demo", "scratch"):
        assert command in done.stdout


def test_import_heron_and_the_report_writers_stay_light():
    code = (
        "import heron, heron.interpret, heron.interpret.report, heron.interpret.figures_job\n"
        "from heron.interpret import write_report"
    )
    assert _loaded_after(code)["loaded"] == []
    # writing a run's outputs needs torch, never matplotlib or torchvision
    loaded = _loaded_after("import heron.tasks._classify_report")["loaded"]
    assert "matplotlib" not in loaded and "torchvision" not in loaded
