"""Rules of the code's layout that no single module's tests would notice being broken."""

from __future__ import annotations

import ast
from pathlib import Path

import linkage

PACKAGE = Path(linkage.__file__).parent


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def test_no_module_imports_another_modules_private_names() -> None:
    """What modules share is public: no ``from linkage.x import _name`` and no
    ``x._name`` on an imported linkage module, anywhere in the package."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        modules = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("linkage"):
                for alias in node.names:
                    if _private(alias.name):
                        found.append(f"{path}:{node.lineno}: {node.module}.{alias.name}")
                    else:
                        modules.add(alias.asname or alias.name)
            elif isinstance(node, ast.Import):
                modules.update((a.asname or a.name).split(".")[0] for a in node.names
                               if a.name.startswith("linkage"))
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and _private(node.attr)
                    and isinstance(node.value, ast.Name) and node.value.id in modules):
                found.append(f"{path}:{node.lineno}: {node.value.id}.{node.attr}")
    assert not found, found


def test_cli_submodules_do_not_import_the_application() -> None:
    """The command modules take what they share from ``linkage.cli.common``; only the
    application (``linkage/cli/__init__.py``) imports them and registers their commands."""
    for path in sorted((PACKAGE / "cli").glob("*.py")):
        if path.name == "__init__.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                assert node.module != "linkage.cli", f"{path}:{node.lineno}"
                assert not (node.module == "linkage" and any(
                    a.name == "cli" for a in node.names)), f"{path}:{node.lineno}"
            elif isinstance(node, ast.Import):
                assert all(a.name != "linkage.cli" for a in node.names), f"{path}:{node.lineno}"


# The stages: they write SQL for any engine and never ask which one runs it.
STAGE_MODULES = ("pipeline.py", "signals.py", "graph.py", "communities.py", "warmstart.py",
                 "campaigns.py", "continuity.py", "incremental.py", "ingest", "scoring")


def _stage_files() -> list[Path]:
    files = []
    for name in STAGE_MODULES:
        path = PACKAGE / name
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return files


def test_no_stage_module_imports_or_tests_for_an_engine() -> None:
    """Every difference between engines lives in ``linkage/engines/``: a stage takes only the
    package's own names (the connection protocol, ``key_sets``, ``open_engine``) and never
    imports an engine's module, pyspark, or tests which connection it was given."""
    import linkage.engines

    public = set(linkage.engines.__all__)
    found = []
    for path in _stage_files():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                    ("linkage.engines", "pyspark", "sqlglot")):
                if node.module != "linkage.engines" or not {a.name for a in node.names} <= public:
                    found.append(f"{path.name}:{node.lineno}: from {node.module} import")
            elif isinstance(node, ast.Import):
                found += [f"{path.name}:{node.lineno}: import {a.name}" for a in node.names
                          if a.name.startswith(("linkage.engines.", "pyspark", "sqlglot"))]
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                  and node.func.id == "isinstance" and len(node.args) == 2
                  and "Connection" in ast.unparse(node.args[1])):
                found.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
    assert _stage_files() and not found, found
