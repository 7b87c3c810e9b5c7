"""A command-line override Hydra cannot apply, told in our words: the key, what was given, the closest valid names
and the fix.

Hydra's own words send the user the wrong way: ``rule=mine`` ends in "Could not override 'rule'. To append to your
config use +rule=mine" (a key nothing reads, and the demo's rules run), ``rules=mnie`` in a listing of the search
path. Hydra has no hook for its composition errors, so :func:`install` wraps the one method every composition goes
through (``ConfigLoaderImpl.load_configuration``: a run, a multirun's jobs, ``--help``, ``--cfg``, ``compose()``)
and re-raises what :func:`explain` can explain as :class:`OverrideError`. Hydra prints such an error's message alone
(a ``CompactHydraException``, hydra/_internal/utils.py ``run_and_report``); ``HYDRA_FULL_ERROR=1`` prints the
traceback with Hydra's error as its cause. An error this module does not know passes through unchanged.
"""

from __future__ import annotations

import difflib
import functools
import re
from typing import Any, Callable

from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import DictConfig, OmegaConf

OWN = "an option of your own is DIR/{group}/{value}.yaml with --config-dir DIR (docs/own-ratings.md)"


class OverrideError(ConfigCompositionException):
    """An override that names no group option or no key of this composition; the message says which and the fix."""


def close(word: str, names: list[str], n: int = 3) -> list[str]:
    """The names nearest ``word`` (difflib's ratio >= 0.6), nearest first, a name with the same letters (``modle``:
    ``model``) before the rest; a name that starts with ``word`` comes too."""
    near = sorted(difflib.get_close_matches(word, names, n=n, cutoff=0.6), key=lambda m: sorted(m) != sorted(word))
    return near + [m for m in names if m.startswith(word) and m not in near][: n - len(near)]


def _listed(names: list[str]) -> str:
    return ", ".join(names) if names else "(none)"


def _given(overrides: list[str], key: str) -> str | None:
    """The override that sets ``key`` (``key=v``, ``+key=v``, ``key@pkg=v``) as typed, or None."""
    for line in overrides:
        lhs = line.partition("=")[0].lstrip("~+")
        if lhs.partition("@")[0] == key:
            return line
    return None


def _options(loader: Any, group: str, config_name: str | None, overrides: list[str]) -> list[str]:
    searchpath = [o for o in overrides if o.startswith("hydra.searchpath")]
    return sorted(set(loader.get_group_options(group, config_name=config_name, overrides=searchpath)))


def missing_option(error: MissingConfigException, overrides: list[str], options: Callable[[str], list[str]]) -> str | None:
    """``rules=mnie``: the group, the value, its nearest options, all options, the fix."""
    group, _, value = (error.missing_cfg_file or "").rpartition("/")
    line = next((o for o in reversed(overrides) if _given([o], group) and o.partition("=")[2] == value), None)
    if not group or line is None:  # not an option the user typed (a config file names it): Hydra's words
        return None
    found = options(group)
    near = close(value, found)
    fix = f"{group}={near[0]}" if near else f"{group}=<one of the options>"
    return (f"{line}: {group} has no option {value!r}. Closest: {_listed(near)}. Options of {group}: {_listed(found)}. "
            f"Fix: {fix}; {OWN.format(group=group, value=value)}.")


def _keys(node: Any) -> list[str]:
    """The keys a user sets (``_target_`` is the code's)."""
    return [str(k) for k in node.keys() if not str(k).startswith("_")] if isinstance(node, DictConfig) else []


def _owner(cfg: DictConfig, parts: list[str]) -> tuple[str, int] | None:
    """(group, number of key parts its package takes) for the longest prefix of ``parts`` that is a chosen group
    (``data.path`` -> ``("data", 1)``, ``hydra.launcher.partition`` -> ``("hydra/launcher", 2)``)."""
    choices = cfg.hydra.runtime.choices
    for n in range(len(parts) - 1, 0, -1):
        if "/".join(parts[:n]) in choices:
            return "/".join(parts[:n]), n
    return None


def unknown_key(key: str, line: str, cfg: DictConfig, options: Callable[[str], list[str]],
                compose_with: Callable[[str, str], DictConfig | None]) -> str:
    """``rater.pth=x``, ``data.path=x`` on data=demo, ``rule=mine``: the deepest part of ``key`` this composition
    has, the nearest names there (or the group that was meant), the options of its group that have the key, the fix."""
    value = line.partition("=")[2]
    parts = key.split(".")
    depth = 0
    node: Any = cfg
    while depth < len(parts) - 1 and isinstance(node, DictConfig) and parts[depth] in node:
        node, depth = node[parts[depth]], depth + 1
    where, leaf = ".".join(parts[:depth]), parts[depth]
    owner = _owner(cfg, parts[: depth + 1]) if depth else None
    plus = f"(+{line.lstrip('+')} would add a key that nothing here reads.)"
    if depth == 0:  # a top-level name: a group or a setting, misspelt
        groups = [g for g in cfg.hydra.runtime.choices if "/" not in g]
        near = close(leaf, sorted(set(groups) | set(_keys(cfg)) - {"hydra"}))
        head = f"{line}: there is no group or setting {leaf!r}. Closest: {_listed(near)}."
        if near and near[0] in groups and len(parts) == 1:
            found = options(near[0])
            fix = (f"{near[0]}={value}" if value in found else
                   f"{near[0]}=<option>, one of {_listed(found)}; {OWN.format(group=near[0], value=value)}")
            return f"{head} Fix: {fix}. {plus}"
        fix = f"{near[0]}{key[len(leaf):]}={value}" if near else "--help lists the groups and settings"
        return f"{head} Fix: {fix}. {plus}"
    if owner is None or owner[1] != depth:  # a key under a setting, or deeper inside a group's option
        near = close(leaf, _keys(node))
        fix = f"{where}.{near[0]}={value}" if near else f"one of the keys of {where}: {_listed(_keys(node))}"
        return f"{line}: {where} has no key {leaf!r}. Closest: {_listed(near)}. Fix: {fix}. {plus}"
    group, chosen = owner[0], cfg.hydra.runtime.choices[owner[0]]
    others = {o: c for o in options(group) if o != chosen and (c := compose_with(group, o)) is not None}
    keys = {o: _keys(_select(c, where)) for o, c in others.items()}
    # an option whose key is ??? (data=local's path, rater=file's) is the one made for a value of the user's own
    having = sorted((o for o, k in keys.items() if leaf in k), key=lambda o: (not _mandatory(others[o], key), o))
    near = close(leaf, _keys(node))
    head = f"{line}: {group}={chosen} has no key {leaf!r} (its keys: {_listed(_keys(node))})."
    rest = ".".join(parts[depth + 1:])
    if rest and "." not in rest and rest in _keys(node):  # method.encore.tau under method=encore: method.tau
        head += f" Under {group}={chosen} the key is {where}.{rest}={value}."
    if having:
        return (f"{head} The options of {group} that have {leaf}: {_listed(having)}. "
                f"Fix: {group}={having[0]} {line.lstrip('+')}. {plus}")
    if near:
        return f"{head} Closest: {_listed(near)}. Fix: {where}.{near[0]}={value}."
    elsewhere: dict[str, list[str]] = {}
    for o, k in keys.items():
        for m in close(leaf, k, 1):
            elsewhere.setdefault(m, []).append(o)
    if not elsewhere:
        return f"{head} Fix: one of its keys, or another option of {group} (--help lists them). {plus}"
    m, opts = next(iter(sorted(elsewhere.items())))
    return (f"{head} Closest in the other options of {group}: "
            f"{'; '.join(f'{k} ({group}={_listed(v)})' for k, v in sorted(elsewhere.items()))}. "
            f"Fix: {group}={opts[0]} {where}.{m}={value}. {plus}")


def _mandatory(cfg: DictConfig, key: str) -> bool:
    parent, _, leaf = key.rpartition(".")
    node = _select(cfg, parent) if parent else cfg
    return isinstance(node, DictConfig) and leaf in node.keys() and OmegaConf.is_missing(node, leaf)


def _select(cfg: DictConfig, where: str) -> Any:
    node: Any = cfg
    for part in where.split("."):
        node = node[part] if isinstance(node, DictConfig) and part in node else None
    return node


def added_near_a_group(cfg: DictConfig, overrides: list[str], options: Callable[[str], list[str]]) -> str | None:
    """``+rule=mine``, what Hydra's own message advises for ``rule=mine``, composes: it adds a top-level key that
    nothing reads, and the demo's rules run. A plain ``+name=value`` whose name is not a group but is near one is
    that mistake; its message names the group."""
    groups = [g for g in cfg.hydra.runtime.choices if "/" not in g]
    for line in overrides:
        name = line.partition("=")[0]
        if not name.startswith("+") or name.startswith("++") or "." in name or "@" in name:
            continue
        near = close(name[1:], groups, 1)
        if near and name[1:] not in groups:
            value = line.partition("=")[2]
            found = options(near[0])
            fix = (f"{near[0]}={value}" if value in found else
                   f"{near[0]}=<option>, one of {_listed(found)}; {OWN.format(group=near[0], value=value)}")
            return (f"{line}: adds a setting {name[1:]!r} that nothing reads (the run would use the default "
                    f"{near[0]}={cfg.hydra.runtime.choices[near[0]]}). Closest group: {near[0]}. Fix: {fix}.")
    return None


def explain(error: ConfigCompositionException, overrides: list[str],
            compose: Callable[[list[str]], DictConfig], options: Callable[[str], list[str]]) -> str | None:
    """Our message for Hydra's ``error`` on ``overrides``, or None for an error this module does not know.
    ``compose(overrides)`` composes (raising as Hydra does); ``options(group)`` lists a group's options."""
    if isinstance(error, MissingConfigException):
        return missing_option(error, overrides, options)
    m = re.match(r"Could not override '([^']+)'", str(error))
    if m is None:
        m = re.match(r"Override (\S+) looks like a config group override, but config group '([^']+)'", str(error))
        if m is None:
            return None
        key, line = m.group(2).replace("/", "."), m.group(1)
    else:
        key, line = m.group(1), _given(overrides, m.group(1)) or m.group(1)
    rest = [o for o in overrides if o != line]
    try:
        cfg = compose(rest)
    except ConfigCompositionException:  # another override is wrong too: Hydra's words for this one
        return None

    def compose_with(group: str, option: str) -> DictConfig | None:
        try:
            return compose([o for o in rest if _given([o], group) is None] + [f"{group}={option}"])
        except Exception:  # noqa: BLE001  an option that does not compose here has no keys to offer
            return None

    return unknown_key(key, line, cfg, options, compose_with)


def install() -> None:
    """Wrap ``ConfigLoaderImpl.load_configuration`` (once) so that the overrides :func:`explain` knows fail with our
    message; idempotent."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    original = ConfigLoaderImpl.load_configuration
    if getattr(original, "_encore_explained", False):
        return

    @functools.wraps(original)
    def load_configuration(self: Any, config_name: str | None, overrides: list[str], run_mode: Any,
                           *args: Any, **kwargs: Any) -> DictConfig:
        try:
            cfg = original(self, config_name, overrides, run_mode, *args, **kwargs)
        except OverrideError:
            raise
        except ConfigCompositionException as error:
            message = explain(error, list(overrides),
                              lambda o: original(self, config_name, o, run_mode, *args, **kwargs),
                              lambda g: _options(self, g, config_name, list(overrides)))
            if message is None:
                raise
            raise OverrideError(message) from error
        if any(o.startswith("+") for o in overrides):
            message = added_near_a_group(cfg, list(overrides), lambda g: _options(self, g, config_name, list(overrides)))
            if message is not None:
                raise OverrideError(message)
        return cfg

    load_configuration._encore_explained = True  # type: ignore[attr-defined]
    ConfigLoaderImpl.load_configuration = load_configuration

    # --help composes outside Hydra's reporter (hydra/_internal/utils.py ``_run_hydra``): a bad override there was a
    # traceback; through run_and_report it is the same one message as in a run.
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import run_and_report

    app_help = Hydra.app_help

    @functools.wraps(app_help)
    def reported_help(self: Any, *args: Any, **kwargs: Any) -> None:
        run_and_report(lambda: app_help(self, *args, **kwargs))

    Hydra.app_help = reported_help
