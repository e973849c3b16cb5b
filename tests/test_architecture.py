"""The layers of docs/architecture.md, checked on the source: every import of a module of
``hasherd`` (at the top of a file or inside a function) points to the same package or a
lower layer, the modules import each other without a circle, and the pure packages import
no event loop."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "hasherd"

# Bottom to top; a package may import its own modules and those of any lower layer.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("hasherd", "errors", "fileio"),
    ("kernel",),
    ("protocol", "training", "data", "storage"),
    ("transport", "emulate"),
    ("devices",),
    ("config",),
    ("logs", "backends", "control"),
    ("jitter", "actors"),
    ("validation",),
    ("scheduler",),
    ("metrics", "deploy"),
    ("daemon",),
    ("cli",),
)
LEVEL = {pkg: i for i, layer in enumerate(LAYERS) for pkg in layer}
PURE = ("kernel", "protocol", "training")
EVENT_LOOPS = ("asyncio", "anyio", "trio", "serial_asyncio", "aiosqlite")


def _module(path: Path) -> str:
    parts = ["hasherd", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module(p): p for p in ROOT.rglob("*.py")}


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "hasherd"


def _imports(module: str) -> Iterator[str]:
    """Every module named by an import statement of ``module`` (absolute names)."""
    path = MODULES[module]
    here = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = here.split(".")[: len(here.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES]
            if len(subs) < len(node.names):  # a name defined in ``base`` itself
                yield base
            yield from subs


def _internal(module: str) -> set[str]:
    return {m for m in _imports(module) if m in MODULES and m != module}


def test_every_package_has_a_layer() -> None:
    assert {_package(m) for m in MODULES} <= set(LEVEL)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down(module: str) -> None:
    mine = _package(module)
    upward = sorted(
        m for m in _internal(module) if _package(m) != mine and LEVEL[_package(m)] >= LEVEL[mine]
    )
    assert upward == [], f"{module} imports from its own or a higher layer: {upward}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _package(m) in PURE))
def test_pure_packages_import_no_event_loop(module: str) -> None:
    loops = sorted(m for m in _imports(module) if m.split(".")[0] in EVENT_LOOPS)
    assert loops == [], f"{module} imports {loops}"


def test_no_import_circle() -> None:
    graph = {m: _internal(m) for m in MODULES}
    # Importing a.b.c runs a/__init__ and a/b/__init__ first: a package's __init__ that
    # re-exports from its own modules is no circle, so only edges between files count.
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                circle = [*stack[stack.index(n) :], n]
                raise AssertionError("import circle: " + " -> ".join(circle))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
