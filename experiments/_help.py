"""``--help`` of every Hydra runner, written when it is asked for, from the composition the runner would run:

- the runner's own description and settings: its module docstring, whose ``Settings:`` block lists the keys it
  reads (``key   what it does``); each is shown as ``key=value`` with the value this composition has, so it can be
  copied as it stands, and a key this composition lacks (``data.path`` on the embedded demo) is left out;
- the config groups this composition swaps (``group=option``), every option that Hydra's search path holds, a
  user's own folder included (``--config-dir DIR`` or ``hydra.searchpath=[file://DIR]``);
- groups only such a folder adds (``+group=option``).

conf/hydra/help/encore.yaml's template (every runner's config selects it) is the app's line, ``${encore_help:}`` and
Hydra's ``$FLAGS_HELP``; Hydra resolves it after composing, with the HydraConfig of that composition set
(hydra/_internal/hydra.py, ``app_help``), then fills ``$FLAGS_HELP`` with string.Template.
"""

from __future__ import annotations

import re
import sys
from typing import Any, Iterator

from omegaconf import DictConfig, ListConfig, OmegaConf

SETTINGS = "Settings:"  # the docstring line that opens a runner's settings block (indented ``key  meaning`` lines)
_ABSENT = object()
MISSING = "???"  # Hydra's mark of a value the user must give, shown as it is
_PLAIN = re.compile(r"^[\w./:@+-]+$")  # a value Hydra's override grammar reads unquoted


def settings_block(doc: str) -> tuple[str, list[tuple[str, str]]]:
    """A runner docstring split into its prose and its ``Settings:`` block, as (key, meaning) pairs. The block is
    the lines after ``Settings:`` up to a blank line: ``key  meaning``, a deeper-indented line continuing a meaning."""
    lines = (doc or "").strip("\n").splitlines()
    stripped = [x.strip() for x in lines]
    if SETTINGS not in stripped:
        return "\n".join(lines).rstrip(), []
    at = end = stripped.index(SETTINGS)
    keys: list[tuple[str, str]] = []
    indent = None
    for end in range(at + 1, len(lines) + 1):
        if end == len(lines) or not stripped[end]:
            break
        depth = len(lines[end]) - len(lines[end].lstrip())
        indent = depth if indent is None else indent
        if depth > indent and keys:
            keys[-1] = (keys[-1][0], f"{keys[-1][1]} {stripped[end]}".strip())
        else:
            key, _, meaning = stripped[end].partition(" ")
            keys.append((key, meaning.strip()))
    return "\n".join(lines[:at] + lines[end:]).rstrip(), keys


def shown(value: Any) -> str:
    """A value as an override types it: ``null``, ``true``, ``0.4``, ``[a,b]``, ``'two words'``."""
    if value is None:
        return "null"
    if value is MISSING:
        return MISSING
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple, ListConfig)):
        return "[" + ",".join(shown(v) for v in value) + "]"
    if isinstance(value, (dict, DictConfig)):
        return "{" + ",".join(f"{k}:{shown(v)}" for k, v in value.items()) + "}"
    text = str(value)
    return text if _PLAIN.match(text) else "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def current(cfg: DictConfig, key: str) -> Any:
    """The value ``key`` has in ``cfg``, resolved where it can be (``???`` for a mandatory value); ``_ABSENT`` when the
    composition has no such key."""
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent, default=_ABSENT) if parent else cfg
    if not isinstance(node, DictConfig) or leaf not in node.keys():  # `in` alone misses a mandatory ??? value
        return _ABSENT
    if OmegaConf.is_missing(node, leaf):
        return MISSING
    if OmegaConf.is_interpolation(node, leaf):  # as typed: ${hydra:runtime.output_dir} has no value before a job
        return OmegaConf.to_container(node, resolve=False)[leaf]
    value = node[leaf]
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def settings_lines(cfg: DictConfig, keys: list[tuple[str, str]]) -> list[str]:
    """``key=value  meaning`` for every listed key this composition has."""
    pairs = [(f"{k}={shown(v)}", m) for k, m in keys if (v := current(cfg, k)) is not _ABSENT]
    width = min(max((len(p) for p, _ in pairs), default=0), 40)
    return [f"  {p:<{width}}  {m}".rstrip() if len(p) <= width else f"  {p}\n  {'':<{width}}  {m}" for p, m in pairs]


def render(name: str, doc: str, cfg: DictConfig, swapped: dict[str, list[str]], added: dict[str, list[str]]) -> str:
    """The help text of runner ``name`` (``plan``) from its docstring, the composed ``cfg`` and the groups."""
    prose, keys = settings_block(doc)
    out = [f"{name}.py: {prose}" if prose else f"{name}.py", ""]
    if keys:
        lacking = [k for k, _ in keys if current(cfg, k) is _ABSENT]
        out += [f"== Settings of {name}.py (key=value as they are now; --cfg job prints every setting) ==",
                *settings_lines(cfg, keys),
                *([f"  (not in this composition: {', '.join(lacking)}; another option of their group has them)"]
                  if lacking else []), ""]
    out += ["== Groups you can swap (group=option) ==", *(f"{g}: {', '.join(o)}" for g, o in swapped.items()), ""]
    if added:
        out += ["== Groups your own folders add (+group=option) ==",
                *(f"{g}: {', '.join(o)}" for g, o in added.items()), ""]
    out += ["== Your own configs ==",
            "--config-dir DIR           adds DIR's groups and options: DIR/rules/mine.yaml is rules=mine (so is",
            "                           hydra.searchpath=[file://DIR]); docs/own-ratings.md walks the own-data path",
            "--cfg job                  the composed config, every setting (rule texts included)",
            "--info defaults            which option each group resolved to",
            "-m key=a,b                 a multirun, one job per value (hydra/launcher=local|slurm|slurm_cpu)",
            "HYDRA_FULL_ERROR=1         an error's full traceback (without it, an input error is its message alone)",
            "ENCORE_RUNS_DIR=DIR        where runs go (unset: ./runs of the folder you run from)",
            "ENCORE_CACHE_DIR=DIR       the artefact cache that every run reuses (unset: ~/.cache/encore)",
            ""]
    return "\n".join(out)


def _groups(loader: Any, config_name: str | None, overrides: list[str],
            source: Any = None) -> Iterator[tuple[str, list[str]]]:
    """(group, options) over Hydra's search path (with ``hydra.searchpath``), or over one of its sources."""
    from hydra.core.object_type import ObjectType

    def options(path: str, kind: ObjectType) -> list[str]:
        if source is not None:
            return source.list(path, kind)
        return loader.get_group_options(path, kind, config_name, overrides)

    def walk(parent: str) -> Iterator[tuple[str, list[str]]]:
        for g in sorted(set(options(parent, ObjectType.GROUP))):
            path = f"{parent}/{g}" if parent else g
            found = sorted(set(options(path, ObjectType.CONFIG)))
            if found:
                yield path, found
            yield from walk(path)

    return walk("")


def help_for(doc: str, cfg: DictConfig, name: str | None = None) -> str:
    """:func:`render` for the composition Hydra has set (``HydraConfig``), listing groups over its search path."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    loader = GlobalHydra.instance().config_loader()
    searchpath = [o for o in hc.overrides.hydra if o.startswith("hydra.searchpath")]
    everything = dict(_groups(loader, hc.job.config_name, searchpath))
    chosen = [g for g in hc.runtime.choices if not g.startswith("hydra/")] + ["hydra/launcher"]
    swapped = {g: everything.get(g, []) for g in sorted(chosen)}
    main = next((s for s in loader.get_sources() if s.provider == "main"), None)
    own = {g for g, _ in _groups(loader, None, [], main)} if main is not None else set()
    added = {g: o for g, o in everything.items() if g not in own and g not in swapped and not g.startswith("hydra")}
    return render(name or hc.job.name, doc, cfg, swapped, added)


def help_text(_root_: DictConfig) -> str:
    """The ``${encore_help:}`` resolver: the help of the runner being run (its docstring is ``__main__``'s)."""
    text = help_for(getattr(sys.modules.get("__main__"), "__doc__", None) or "", _root_)
    return text.replace("$", "$$")  # Hydra fills the template with string.Template: a literal $ is written $$


def register() -> None:
    if not OmegaConf.has_resolver("encore_help"):
        OmegaConf.register_new_resolver("encore_help", help_text, use_cache=False)
