"""Which files of the project each pipeline stage runs: the stage script plus every
``deepfake_detector`` module it can import, found statically (every ``import`` statement anywhere in
the file, inside functions and branches too: stages import lazily and by data source), then
transitively. Importing a module also runs its packages' ``__init__.py``, so those count as well."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "deepfake_detector"


def module_file(root: Path, name: str) -> Path | None:
    """``deepfake_detector.sources.local`` → its file (a module or a package's ``__init__.py``)."""
    base = root.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(root: Path, path: Path) -> set[str]:
    """Every module name an import statement in ``path`` may load (``from a import b``: ``a`` and,
    when it is a module, ``a.b``)."""
    package = module_name(root, path)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def closure(root: Path, script: Path) -> set[str]:
    """The files (relative to ``root``, POSIX) ``script`` runs: itself and every project module."""
    seen: set[Path] = set()
    todo = [script]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in imported_names(root, path):
            if name != PACKAGE and not name.startswith(PACKAGE + "."):
                continue
            parts = name.split(".")
            for depth in range(1, len(parts) + 1):  # the packages' __init__.py run first
                found = module_file(root, ".".join(parts[:depth]))
                if found is not None:
                    todo.append(found)
    return {path.relative_to(root).as_posix() for path in seen}


def covered(root: Path, deps: list[str]) -> set[str]:
    """The Python files a stage's ``deps`` cover (a folder covers every file in it)."""
    files = set()
    for dep in deps:
        path = root / dep
        if path.is_dir():
            files.update(p.relative_to(root).as_posix() for p in path.rglob("*.py")
                         if "__pycache__" not in p.parts)
        elif dep.endswith(".py"):
            files.add(dep)
    return files
