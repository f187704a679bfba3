"""Which files of the project each pipeline stage runs: the stage script plus every
``deepfake_detector`` module it can import, found statically (every ``import`` statement anywhere in
the file, inside functions and branches too: stages import lazily and by data source), then
transitively. Importing a module also runs its packages' ``__init__.py``, so those count as well."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "deepfake_detector"


def module_file(root: Path, name: str) -> Path | None:
    """``deepfake_detector.data.sources.local`` → its file (a module or a package's ``__init__.py``)."""
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


def shortest_deps(root: Path, needed: set[str]) -> list[str]:
    """``needed`` as dvc.yaml would list it: a folder where the stage runs every Python file in it (and
    the folder holds nothing else that a code edit could touch), each other file by name."""
    def files_in(folder: Path) -> set[str]:
        return {p.relative_to(root).as_posix() for p in folder.rglob("*.py") if "__pycache__" not in p.parts}

    listed: list[str] = []
    claimed: set[str] = set()
    for path in sorted(needed, key=lambda p: (p.count("/"), p)):
        if path in claimed:
            continue
        folder = (root / path).parent
        best = None
        while folder != root and files_in(folder) <= needed:  # the largest folder run in full
            best = folder
            folder = folder.parent
        if best is not None and best.relative_to(root).as_posix() != PACKAGE:
            listed.append(best.relative_to(root).as_posix())
            claimed |= files_in(best)
        else:
            listed.append(path)
            claimed.add(path)
    return sorted(listed)


CODE_PREFIXES = (PACKAGE + "/", "stages/")


def stage_names(root: Path) -> list[str]:
    import yaml

    return list(yaml.safe_load((root / "dvc.yaml").read_text())["stages"])


def write_dvc_yaml(root: Path) -> bool:
    """Rewrite the code part of every stage's ``deps`` in dvc.yaml (its data deps stay, after it);
    the rest of the file is left byte for byte. True when something changed."""
    text = (root / "dvc.yaml").read_text()
    lines = text.splitlines(keepends=True)
    out, stage, in_deps = [], None, False
    for line in lines:
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if indent == 2 and stripped.endswith(":") and not stripped.startswith("#"):
            stage = stripped[:-1]
        if in_deps:
            if stripped.startswith("- "):
                dep = stripped[2:].split(":")[0]
                if dep.startswith(CODE_PREFIXES):
                    continue  # regenerated below
                out.append(line)
                continue
            in_deps = False
        out.append(line)
        if indent == 4 and stripped == "deps:" and stage is not None:
            in_deps = True
            needed = closure(root, root / "stages" / f"{stage}.py")
            out.extend(f"      - {dep}\n" for dep in shortest_deps(root, needed))
    new = "".join(out)
    if new != text:
        (root / "dvc.yaml").write_text(new)
    return new != text


if __name__ == "__main__":  # `make deps`: after moving or adding a module a stage imports
    changed = write_dvc_yaml(Path(__file__).resolve().parents[1])
    print("dvc.yaml: code deps rewritten" if changed else "dvc.yaml: code deps already exact")
