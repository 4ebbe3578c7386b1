"""Imports go one way: a module never imports a module of a higher layer (README, "Layout").

Every ``import`` statement of ``src/vidfm`` counts, function-local ones included (a lazy import is still a
dependency). The table below is the layering; a new package must be added to it.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

# (rank, module prefixes): a module's rank is that of its longest matching prefix.
LAYERS: list[tuple[int, tuple[str, ...]]] = [
    (0, ("vidfm", "vidfm.utils", "vidfm.io", "vidfm.config", "vidfm.errors")),
    (1, ("vidfm.train", "vidfm.train.config", "vidfm.train.distributed", "vidfm.train.checkpoint")),
    (
        1,
        ("vidfm.train.optim", "vidfm.train.schedule", "vidfm.train.ema", "vidfm.layers.frozen"),
    ),  # frozen: imports only torch
    (2, ("vidfm.data", "vidfm.layers", "vidfm.masking", "vidfm.objectives")),
    (3, ("vidfm.models",)),
    (4, ("vidfm.convert",)),
    (5, ("vidfm.runs",)),
    (6, ("vidfm.teachers", "vidfm.lavit", "vidfm.targets")),
    (7, ("vidfm.tasks",)),
    (8, ("vidfm.recipes",)),
    (9, ("vidfm.train.trainer", "vidfm.train.pretrain", "vidfm.train.samplers", "vidfm.eval")),
    (9, ("vidfm.demo", "vidfm.demo_language", "vidfm.demo_stages", "vidfm.demo_distil")),
    (9, ("vidfm.commands", "vidfm.cli")),
]


def rank(module: str) -> int:
    best, found = -1, None
    for r, prefixes in LAYERS:
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best:
                best, found = len(p), r
    if found is None:
        raise KeyError(f"{module} is in no layer: add its package to LAYERS (tests/test_layering.py)")
    return found


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every vidfm import in ``path``."""
    pkg = module_name(path)
    if path.name != "__init__.py":
        pkg = pkg.rpartition(".")[0]
    return parse_imports(path.read_text(), pkg, str(path))


def parse_imports(source: str, pkg: str, filename: str = "<src>") -> list[tuple[int, str]]:
    """(line, module) of every vidfm import in ``source`` of package ``pkg``; ``from vidfm.x import y``
    counts as ``vidfm.x.y`` when ``vidfm/x/y.py`` exists (a submodule), else as ``vidfm.x``."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "vidfm"]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(pkg.split(".")[: len(pkg.split(".")) - node.level + 1] + [base]).strip(".")
            if base.split(".")[0] != "vidfm":
                continue
            for a in node.names:
                sub = f"{base}.{a.name}"
                is_module = (SRC / Path(*sub.split("."))).with_suffix(".py").is_file() or (
                    SRC / Path(*sub.split("."))
                ).is_dir()
                found.append((node.lineno, sub if is_module else base))
    return found


def all_imports() -> dict[str, list[tuple[int, str]]]:
    return {module_name(p): imports(p) for p in sorted((SRC / "vidfm").rglob("*.py"))}


def upward(graph: dict[str, list[tuple[int, str]]]) -> list[str]:
    return sorted(
        {
            f"{mod}:{line} imports {dep} (layer {rank(dep)} > {rank(mod)})"
            for mod, deps in graph.items()
            for line, dep in deps
            if rank(dep) > rank(mod)
        }
    )


def test_imports_go_down() -> None:
    found = upward(all_imports())
    assert not found, "upward imports:\n" + "\n".join(found)


def test_no_import_cycles() -> None:
    found = cycles(all_imports())
    assert not found, "import cycles:\n" + "\n".join(found)


def test_check_catches_a_mutual_import() -> None:
    """The checker itself: two modules of one layer importing each other, one only inside a function and
    one only for type checking, are a cycle."""
    report = (
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from vidfm.eval.suite import SuiteResult\n"
    )
    suite = "def run():\n    from vidfm.eval.report import write_report\n"
    graph = {
        "vidfm.eval.report": parse_imports(report, "vidfm.eval"),
        "vidfm.eval.suite": parse_imports(suite, "vidfm.eval"),
    }
    assert not upward(graph)  # same layer: only the cycle check sees it
    assert cycles(graph) == ["vidfm.eval.report -> vidfm.eval.suite -> vidfm.eval.report"]


def cycles(imports: dict[str, list[tuple[int, str]]]) -> list[str]:
    """Every import cycle of the (module -> imports) graph, as ``a -> b -> a``."""
    graph = {mod: {d for _, d in deps if d != mod} for mod, deps in imports.items()}
    # A package's __init__ re-exporting its own modules is not a cycle of interest.
    graph = {m: {d for d in ds if not m.startswith(d + ".")} for m, ds in graph.items()}
    found, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                found.append(" -> ".join(stack[stack.index(dep) :] + [dep]))
            elif dep not in state:
                visit(dep, stack + [dep])
        state[node] = 2

    for mod in sorted(graph):
        if mod not in state:
            visit(mod, [mod])
    return found


def test_check_catches_an_upward_import() -> None:
    """The checker itself: a teacher importing a recipe, even lazily inside a function, is reported; a
    recipe importing a teacher is not."""
    teacher = "import torch\n\ndef load(p):\n    from vidfm.recipes import load_run_config\n"
    recipe = "from vidfm.teachers.clip import load_clip_teacher\nfrom ..tasks import umt\n"
    graph = {
        "vidfm.teachers.fake": parse_imports(teacher, "vidfm.teachers"),
        "vidfm.recipes.fake": parse_imports(recipe, "vidfm.recipes"),
    }
    assert graph["vidfm.recipes.fake"] == [(1, "vidfm.teachers.clip"), (2, "vidfm.tasks.umt")]
    assert upward(graph) == ["vidfm.teachers.fake:4 imports vidfm.recipes (layer 8 > 6)"]
    assert rank("vidfm.train.trainer") > rank("vidfm.recipes") > rank("vidfm.train.config")
