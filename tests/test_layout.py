"""The house's layer rules, read off the import statements of every module (ARCHITECTURE.md, "Layout").

core is the ground floor and imports nothing of ours; data sits below the encoders (it never imports the
checkpoint, models, tasks, labels or probe); models never import labels, probe or data; the library never imports
its CLIs or the demo; there is no import cycle between modules. Every ``import``/``from … import`` counts, also
those inside functions: a lazy import breaks a load-time cycle but not the layering.
"""
import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "music_ssl"

# area -> the areas it may import (besides itself). An area is the first folder under music_ssl/, or a top-level
# module's name. The root package (__init__) registers the plugin and is left out of the rules.
ALLOWED = {
    "core": set(),
    "errors": {"core"},  # public names of the core error tree and device resolver
    "device": {"core"},
    "fairseq_patches": {"core"},
    "run_errors": {"core"},  # how a training run ends on an expected error (fairseq/hydra overrides)
    "data": {"core"},
    "models": {"core"},
    "checkpoint": {"core", "models"},
    "tasks": {"core", "data", "models"},
    "labels": {"core", "data", "checkpoint"},
    "export": {"core", "checkpoint", "models"},
    "probe": {"core", "data", "checkpoint", "export", "models"},
    "demo": {"core", "data", "labels", "probe", "<root>"},
    "cli": {"core", "data", "labels", "probe", "export", "checkpoint", "demo", "<root>"},  # <root>: registers
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set:
    """Absolute names of the music_ssl modules ``path`` imports (relative imports resolved)."""
    name = module_name(path)
    return imports_in(path.read_text(), name if path.name == "__init__.py" else name.rsplit(".", 1)[0])


def imports_in(source: str, package: str) -> set:
    """The music_ssl modules that ``source``, a module of ``package``, imports."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # ``from pkg import sub`` imports the module pkg.sub; ``from mod import name`` the module mod
            found |= {f"{base}.{a.name}" if module_path(f"{base}.{a.name}") else base for a in node.names}
    return {m for m in found if m.split(".")[0] == "music_ssl" and module_path(m) is not None}


def module_path(name: str):
    """The file of module ``name`` (a package's ``__init__.py``), or None for a name that is not a module."""
    base = PACKAGE.parent.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def area(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "<root>"


@pytest.fixture(scope="module")
def graph() -> dict:
    """module -> the music_ssl modules it imports (every .py file of the package)."""
    return {module_name(p): imported_modules(p) - {module_name(p)} for p in sorted(PACKAGE.rglob("*.py"))}


def test_the_rules_cover_every_area(graph):
    assert {area(m) for m in graph} - {"<root>"} == set(ALLOWED)


def test_every_import_follows_the_layer_rules(graph):
    broken = sorted(f"{module} imports {target}" for module, targets in graph.items() for target in targets
                    if area(module) != "<root>" and area(target) != area(module)
                    and area(target) not in ALLOWED[area(module)])
    assert not broken, "\n".join(broken)


def test_core_imports_nothing_of_ours(graph):
    assert all(area(t) == "core" for m, targets in graph.items() if area(m) == "core" for t in targets)


def test_data_does_not_import_checkpoint_or_anything_above(graph):
    above = {"checkpoint", "models", "tasks", "labels", "probe", "export", "demo", "cli", "<root>"}
    assert not {(m, t) for m, targets in graph.items() if area(m) == "data" for t in targets if area(t) in above}


def test_no_import_cycle_between_modules(graph):
    """Tarjan's strongly connected components of the module graph: each must be a single module."""
    edges = {m: {t for t in targets if t in graph and t != "music_ssl"} for m, targets in graph.items()}
    index, low, stack, on_stack, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in edges[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    assert not cycles, cycles


def test_the_walker_sees_lazy_and_relative_imports():
    """A relative import inside a function is found and resolved (so the rules above can fail)."""
    source = "import os\ndef f():\n    from ..checkpoint import FrozenEncoder\n    from . import audio\n"
    assert imports_in(source, "music_ssl.data") == {"music_ssl.checkpoint", "music_ssl.data.audio"}


def test_area_counts_are_plausible(graph):
    """Sanity: the graph holds the package (so an empty walk cannot pass the rules)."""
    per_area = defaultdict(int)
    for module in graph:
        per_area[area(module)] += 1
    assert per_area["probe"] > 10 and per_area["data"] > 5 and per_area["core"] >= 6
