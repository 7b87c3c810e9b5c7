"""The house's rules, checked over the whole package: no import circle, no import from a lower layer into a higher
one (function-level imports included), and every ``_target_`` in ``conf/`` resolves to an object."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml
from hydra.utils import get_object

from conftest import ROOT

SRC = ROOT / "src" / "encore"
# Layers, lowest first: a module may import modules of its own layer or a lower one, never a higher one.
LAYERS = [
    ["encore.errors", "encore.cache.artifacts", "encore.cache.cache_only", "encore.entropy", "encore.compose", "encore.stats"],  # infrastructure, math
    ["encore.scale", "encore.data"],                    # hardware and models before loading; pairs and their readers
    ["encore.rules", "encore.run.settings", "encore.evaluate", "encore.report"],
    ["encore.rating", "encore.rm"],                     # raters; the reward model and its trainers
    ["encore.judge", "encore.methods", "encore.gating", "encore.run.study", "encore.run.tracking", "encore.run.summary",
     "encore.run.job", "encore.run.run_dirs", "encore.run.main_table"],  # stages, and the glue between Hydra jobs and runs
    ["encore.run.pipeline"],
    ["encore.node.plan", "encore.node.plan_costs", "encore.node.replicas", "encore.node.gpu_check"],  # preflight plan; rater copies over a node's GPUs
]


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in SRC.rglob("*.py")}


def layer(mod: str) -> int:
    for i, prefixes in enumerate(LAYERS):
        if any(mod == p or mod.startswith(p + ".") for p in prefixes):
            return i
    raise AssertionError(f"{mod} is in no layer of tests/test_house.py: add it to LAYERS")


def imports(mod: str) -> set[str]:
    """Every encore module ``mod`` imports, at any depth of its code (function-level imports count)."""
    out = set()
    for node in ast.walk(ast.parse(MODULES[mod].read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else node.module
                     for a in node.names]
        else:
            continue
        out |= {n for n in names if n in MODULES and n != mod}
    return out


GRAPH = {m: imports(m) for m in MODULES}


def test_every_module_is_in_a_layer():
    for m in MODULES:
        if m != "encore":
            layer(m)


def test_no_upward_import():
    bad = [f"{m} (layer {layer(m)}) imports {d} (layer {layer(d)})" for m, deps in GRAPH.items() if m != "encore"
           for d in deps if layer(d) > layer(m)]
    assert not bad, "\n".join(bad)


def test_no_import_circle():
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(GRAPH[m]):
            if state.get(d) == 1:
                raise AssertionError("import circle: " + " -> ".join(stack[stack.index(d):] + [d]))
            if d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(GRAPH):
        if m not in state:
            visit(m)


def test_the_graph_holds_function_level_imports():
    """plan.py imports the pipeline only inside functions (encore.node.plan_costs likewise): the graph must see it, or the
    layer and circle checks would pass over every lazy import."""
    src = MODULES["encore.node.plan"].read_text()
    assert "    from encore.run.pipeline import" in src and "\nfrom encore.run.pipeline import" not in src
    assert "encore.run.pipeline" in GRAPH["encore.node.plan"]


def targets() -> list[tuple[str, str]]:
    out = []
    for path in sorted((ROOT / "conf").rglob("*.yaml")):
        def walk(node):
            if isinstance(node, dict):
                for k, v in node.items():
                    if k == "_target_":
                        out.append((str(path.relative_to(ROOT)), v))
                    walk(v)
            elif isinstance(node, list):
                for v in node:
                    walk(v)
        walk(yaml.safe_load(path.read_text()))
    return out


@pytest.mark.parametrize("where,target", targets(), ids=lambda x: str(x))
def test_every_target_in_conf_resolves(where, target, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))  # benchmarks/ sits beside the library, as experiments/benchmark.py sees it
    assert callable(get_object(target)), f"{where}: _target_ {target} is not callable"


def test_target_check_fails_on_a_stale_target():
    with pytest.raises(Exception):
        get_object("encore.backbone.Encoder")  # the module moved to encore.rm.backbone
