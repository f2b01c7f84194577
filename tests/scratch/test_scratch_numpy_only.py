"""heron.scratch is numpy only: no module in it imports torch, or heron code outside scratch."""

import ast
from pathlib import Path

import heron.scratch

SCRATCH = Path(heron.scratch.__file__).parent


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module)
    return names


def test_no_scratch_module_imports_torch():
    files = sorted(SCRATCH.glob("*.py"))
    assert len(files) >= 10
    for path in files:
        for name in _imports(path):
            top = name.split(".")[0]
            assert top not in {"torch", "torchvision"}, f"{path.name} imports {name}"
            if top == "heron":
                assert name.startswith("heron.scratch"), f"{path.name} imports {name}"
