"""The public face of the package: lazy exports, no torch at import, no import cycle."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import dleem

SRC = Path(dleem.__file__).parent

PUBLIC = {"register_files", "make_pairs", "train", "upscale_file", "upscale_array",
          "evaluate_workspace", "run_workflow", "Workspace", "AffineMap", "ModelConfig",
          "Cancelled"}


def test_the_step_functions_and_main_types_are_exported():
    assert PUBLIC <= set(dleem.__all__)
    for name in PUBLIC:
        assert getattr(dleem, name) is not None
    assert dleem.Workspace.__module__ == "dleem.workspace"


def test_import_and_help_load_no_torch():
    code = ("import sys, dleem, dleem.cli; dleem.cli.build_parser();"
            "print(int('torch' in sys.modules), int('matplotlib' in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["0", "0"]


def test_import_and_the_cli_load_no_napari_nor_qt():
    code = ("import sys, dleem, dleem.cli; dleem.cli.build_parser();"
            "print([m for m in ('napari', 'qtpy', 'PyQt5', 'PyQt6', 'PySide6') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _top_level_imports(path: Path, name: str) -> set[str]:
    """Modules of dleem a module imports when it is imported (function bodies excluded)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return {m for m in found if m == "dleem" or m.startswith("dleem.")}


def test_no_import_cycle_in_the_package():
    modules = {_module_name(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps = set()
        for dep in _top_level_imports(path, name):
            while dep and dep not in modules:  # "from dleem.x import function" -> dleem.x
                dep = dep.rpartition(".")[0]
            # importing a submodule first runs every package __init__ above it
            parts = dep.split(".")
            deps.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
        deps.discard(name)
        graph[name] = {d for d in deps if d in modules and not name.startswith(d + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycle = stack[stack.index(dep):] + [dep]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_no_file_level_workflow_module_beside_the_stage_packages():
    allowed = {"__init__", "__main__", "errors", "imaging", "plotting", "progress", "workflow",
               "workspace"}
    loose = {p.stem for p in SRC.glob("*.py")} - allowed
    assert not loose, f"move into a stage package: {sorted(loose)}"
