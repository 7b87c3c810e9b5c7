"""The house's rules, checked over the whole package: no import circle, no import from a higher layer into a lower
one (function-level imports included), folders that import downward only (no two folders import each other), a top
floor that holds only the paper's ideas and the vocabulary every floor shares, and every ``_target_`` in ``conf/``
resolves to an object."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml
from hydra.utils import get_object

from conftest import ROOT

SRC = ROOT / "src" / "encore"
# Layers, lowest first: a module may import modules of its own layer or a lower one, never a higher one. A folder is
# one entry; a folder sharing a layer with another folder may still not import it (test_folders_import_downward).
LAYERS = [
    ["encore.errors", "encore.cache", "encore.entropy", "encore.compose", "encore.stats"],  # vocabulary, math, caches
    ["encore.scale", "encore.data"],          # hardware and models before loading; pairs and their readers
    ["encore.rules", "encore.prompts", "encore.evaluate", "encore.report"],  # rules and how an LLM is asked; Safety
    ["encore.rm"],                            # the reward model and its trainers
    ["encore.rating"],                        # raters (the embedded one embeds with rm's backbone)
    ["encore.judge", "encore.gating", "encore.methods"],  # composition methods and baselines
    ["encore.run"],                           # the machinery that stages a run
    ["encore.node"],                          # the machinery that plans and fills a node
]
FOLDERS = sorted(p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists())
# The top floor: the paper's ideas and the vocabulary every floor shares (issue 27: at most about ten modules)
TOP = {"entropy", "compose", "stats", "evaluate", "methods", "gating", "judge", "rules", "prompts", "errors"}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in SRC.rglob("*.py")}


def layer(mod: str) -> int:
    for i, prefixes in enumerate(LAYERS):
        if any(mod == p or mod.startswith(p + ".") for p in prefixes):
            return i
    raise AssertionError(f"{mod} is in no layer of tests/test_house.py: add it to LAYERS")


def folder(mod: str) -> str | None:
    """The folder (subpackage) a module sits in, None on the top floor."""
    parts = mod.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in FOLDERS) else None


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


def folder_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Which folders import which (a module's imports, its folder's edges; imports within a folder are not edges)."""
    out: dict[str, set[str]] = {}
    for m, deps in graph.items():
        for d in deps:
            a, b = folder(m), folder(d)
            if a and b and a != b:
                out.setdefault(a, set()).add(b)
    return out


def test_every_module_is_in_a_layer():
    for m in MODULES:
        if m != "encore":
            layer(m)


def test_no_upward_import():
    bad = [f"{m} (layer {layer(m)}) imports {d} (layer {layer(d)})" for m, deps in GRAPH.items() if m != "encore"
           for d in deps if layer(d) > layer(m)]
    assert not bad, "\n".join(bad)


def test_folders_import_downward():
    """Between two folders, imports run one way only, from the higher layer to the lower: a folder never imports a
    folder of its own layer or a higher one (rm/tiny.py importing rating/ while rating/ imports rm/ was one)."""
    bad = [f"{a}/ (layer {layer('encore.' + a)}) imports {b}/ (layer {layer('encore.' + b)})"
           for a, bs in folder_graph(GRAPH).items() for b in sorted(bs)
           if layer("encore." + b) >= layer("encore." + a)]
    assert not bad, "\n".join(bad)


def test_the_folder_check_sees_a_circle_between_folders():
    """The folder check on a graph with rm/ and rating/ importing each other: it must name the pair."""
    graph = {"encore.rm.tiny": {"encore.rating.hf"}, "encore.rating.hf": {"encore.rm.backbone"}}
    assert folder_graph(graph) == {"rm": {"rating"}, "rating": {"rm"}}
    assert any(layer("encore." + b) >= layer("encore." + a) for a, bs in folder_graph(graph).items() for b in bs)


def test_the_top_floor_holds_the_papers_ideas():
    """src/encore/ shows only the paper's ideas and the shared vocabulary beside its folders; the machinery lives in
    folders named for what it does (run/: stage a run, node/: plan and fill a node, cache/: the artefact cache)."""
    top = {p.stem for p in SRC.glob("*.py") if p.stem != "__init__"}
    assert top == TOP, f"top-level modules: {sorted(top)}; expected {sorted(TOP)}"
    assert {"run", "node", "cache"} <= set(FOLDERS)


def test_old_top_level_paths_still_locate_their_objects():
    """A user's config that names a moved module's object (``_target_: encore.tracking.WandbTracker``) still resolves,
    through ``encore.__getattr__`` (Hydra locates by getattr), to the object at its new place."""
    import encore
    from encore.run.tracking import WandbTracker

    with pytest.warns(DeprecationWarning, match="encore.tracking moved to encore.run.tracking"):
        assert get_object("encore.tracking.WandbTracker") is WandbTracker
    for old, new in encore.MOVED.items():
        assert new in MODULES and old not in {p.stem for p in SRC.glob("*.py")}, (old, new)


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
    """plan.py imports the pipeline only inside functions (encore.node.plan_costs likewise): the graph must see it, or
    the layer and circle checks would pass over every lazy import."""
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
