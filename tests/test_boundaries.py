"""Package boundaries: imports go one way, dali_mix <- pipelines <- dali_mix_tools.

The library (`dali_mix/`, what users import in their own pipeline) never imports the ready-made
pipelines (`pipelines/`) nor the command-line tools (`dali_mix_tools/`), and `pipelines/` never
imports the tools. Every import statement of every module is read from its syntax tree, those
inside functions included (a lazy import hides a cycle, it does not remove it), relative imports
resolved against the module's package, and so are `importlib.import_module("...")` /
`__import__("...")` calls with a literal name.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "dali_mix": {"pipelines", "dali_mix_tools"},
    "pipelines": {"dali_mix_tools"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the file at `path`."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module
            found.append((node.lineno, name))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if called in ("import_module", "__import__"):
                found.append((node.lineno, node.args[0].value))
    return found


def violations(package: str) -> list[str]:
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for line, name in imported_modules(path):
            if name.split(".")[0] in FORBIDDEN[package]:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    return bad


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_go_one_way(package):
    assert (ROOT / package / "__init__.py").is_file()
    assert violations(package) == []


def test_the_scan_sees_lazy_relative_and_dynamic_imports(tmp_path, monkeypatch):
    """The scan itself: an import inside a function, a relative import climbing out of the
    package, and importlib.import_module with a literal are all reported."""
    pkg = tmp_path / "dali_mix" / "sub"
    pkg.mkdir(parents=True)
    (tmp_path / "dali_mix" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "m.py").write_text(
        "import os\n"
        "from . import sibling\n"
        "def f():\n"
        "    from pipelines.classification import train_pipeline\n"
        "    import importlib\n"
        "    return importlib.import_module('dali_mix_tools.preview')\n"
        "from ..other import x\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert sorted(imported_modules(pkg / "m.py")) == [
        (1, "os"), (2, "dali_mix.sub"), (4, "pipelines.classification"), (5, "importlib"),
        (6, "dali_mix_tools.preview"), (7, "dali_mix.other")]
    assert violations("dali_mix") == ["dali_mix/sub/m.py:4 imports pipelines.classification",
                                      "dali_mix/sub/m.py:6 imports dali_mix_tools.preview"]


def test_python_m_dali_mix_points_at_the_tools():
    """`python -m dali_mix` (the command line before the tools left the library) says in one
    line where the command is, without importing the tools."""
    proc = subprocess.run([sys.executable, "-m", "dali_mix", "data"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        "error: the dali-mix command line is `dali-mix` (or `python -m dali_mix_tools`); "
        "`dali_mix` is the library you import in your pipeline"]
