"""The core library never imports the trainer, the CLI or a web app.

Checked statically: every ``import`` / ``from ... import`` anywhere in every core file (module
level, inside functions, ``try`` and ``TYPE_CHECKING`` blocks), with relative imports resolved,
plus ``importlib.import_module("...")`` / ``__import__("...")`` calls with a literal name. A
runtime ``sys.modules`` check would only see imports made at import time.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

PACKAGE = "siamface"
SRC = Path(__file__).resolve().parents[1] / "src" / PACKAGE
APPS = ("train", "cli", "web")  # siamface.<app>: packages (or modules) that use the core


def core_files(root: Path = SRC) -> list[Path]:
    """Every .py file of the package except those of the app packages / modules."""
    files = []
    for path in sorted(root.rglob("*.py")):
        top = path.relative_to(root).parts[0]
        if top in APPS or top.removesuffix(".py") in APPS:
            continue
        files.append(path)
    return files


def module_name(path: Path, root: Path = SRC) -> str:
    parts = [PACKAGE, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_app(name: str) -> bool:
    parts = name.split(".")
    return len(parts) >= 2 and parts[0] == PACKAGE and parts[1] in APPS


def _imported_names(node: ast.AST, module: str, is_package: bool) -> Iterator[str]:
    """Absolute names of the modules (or module attributes) an import node may load."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            package = module.split(".") if is_package else module.split(".")[:-1]
            base_parts = package[: len(package) - (node.level - 1)]
            base = ".".join(base_parts + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        yield base
        for alias in node.names:  # ``from siamface import cli`` imports siamface.cli
            if alias.name != "*":
                yield f"{base}.{alias.name}"
    elif isinstance(node, ast.Call) and node.args:
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        first = node.args[0]
        if name in ("import_module", "__import__") and isinstance(first, ast.Constant) \
                and isinstance(first.value, str):
            yield first.value


def app_imports(source: str, filename: str, module: str, is_package: bool = False
                ) -> list[str]:
    """``filename:line: name`` for every import of an app package in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        for name in _imported_names(node, module, is_package):
            if _is_app(name):
                found.append(f"{filename}:{node.lineno}: {name}")
                break
    return found


def core_app_imports(root: Path = SRC) -> list[str]:
    """Every app import in the core files of the package at ``root``."""
    violations = []
    for path in core_files(root):
        violations += app_imports(path.read_text(encoding="utf-8"),
                                  path.relative_to(root.parent).as_posix(),
                                  module_name(path, root), is_package=path.name == "__init__.py")
    return violations


def test_core_does_not_import_apps():
    violations = core_app_imports()
    assert not violations, "core modules import app packages:\n" + "\n".join(violations)


def test_a_late_import_in_a_core_file_is_found(tmp_path):
    """End to end on a package tree: function-level and relative imports fail the check."""
    root = tmp_path / PACKAGE
    files = {
        "__init__.py": "",
        "service.py": "import os\n\ndef _late():\n    from .cli import main\n",
        "losses/__init__.py": "",
        "losses/focal.py": "def f():\n    if True:\n        from ..train import loop\n",
        "cli/main.py": "from siamface.train import run\n",  # apps may import anything
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    assert core_app_imports(root) == [
        "siamface/losses/focal.py:3: siamface.train",
        "siamface/service.py:4: siamface.cli",
    ]


def test_core_files_are_discovered_by_walking_the_package():
    rel = {p.relative_to(SRC).as_posix() for p in core_files()}
    # spot checks: top-level modules, packages and their submodules are all covered
    assert {"__init__.py", "service.py", "io.py", "_atomic.py", "errors.py", "render.py",
            "backbones/registry.py", "detect/mtcnn.py", "data/__init__.py",
            "losses/focal.py"} <= rel
    def is_app_file(r: str) -> bool:
        return r.split("/")[0].removesuffix(".py") in APPS

    assert not any(is_app_file(r) for r in rel)
    every = {p.relative_to(SRC).as_posix() for p in SRC.rglob("*.py")}
    assert every - rel == {r for r in every if is_app_file(r)}
    assert any(r.startswith("train/") for r in every) and any(r.startswith("cli/") for r in every)


def test_core_files_exclude_app_modules_and_packages(tmp_path):
    for rel in ("__init__.py", "core.py", "sub/__init__.py", "sub/deep/x.py", "train/loop.py",
                "cli/main.py", "web/app.py", "web.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("")
    got = {p.relative_to(tmp_path).as_posix() for p in core_files(tmp_path)}
    assert got == {"__init__.py", "core.py", "sub/__init__.py", "sub/deep/x.py"}


def test_checker_sees_imports_anywhere():
    """Self-check: the walker finds app imports the runtime check could not see."""
    source = (
        "from __future__ import annotations\n"            # 1
        "import os\n"                                     # 2
        "from typing import TYPE_CHECKING\n"              # 3
        "if TYPE_CHECKING:\n"                             # 4
        "    from siamface.train.config import Config\n"  # 5
        "def f():\n"                                      # 6
        "    import siamface.cli.main\n"                  # 7
        "try:\n"                                          # 8
        "    from siamface import web\n"                  # 9
        "except ImportError:\n"                           # 10
        "    pass\n"                                      # 11
        "class C:\n"                                      # 12
        "    def g(self):\n"                              # 13
        "        from ..cli import main\n"                # 14
        "        from . import train\n"                   # 15
        "        from .registry import create_backbone\n"  # 16
        "        import siamface.training_notes\n"        # 17
        "def h():\n"                                      # 18
        "    importlib.import_module('siamface.train')\n"  # 19
    )
    found = app_imports(source, "x.py", "siamface.backbones.x")
    assert found == [
        "x.py:5: siamface.train.config",
        "x.py:7: siamface.cli.main",
        "x.py:9: siamface.web",
        "x.py:14: siamface.cli",
        "x.py:19: siamface.train",
    ]
    # ``from . import train`` in siamface/__init__.py is siamface.train; in a subpackage not
    package_found = app_imports("def f():\n    from . import train\n", "__init__.py",
                                "siamface", is_package=True)
    assert package_found == ["__init__.py:2: siamface.train"]
    assert app_imports("from . import train\n", "b/__init__.py", "siamface.backbones",
                       is_package=True) == []
    assert app_imports("from .. import cli\n", "b/x.py", "siamface.backbones.x") == \
        ["b/x.py:1: siamface.cli"]
    assert app_imports("import siamface.model\nfrom siamface import service\n", "y.py",
                       "siamface.y") == []


def test_importing_siamface_is_light():
    code = "import siamface, sys; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "False"
