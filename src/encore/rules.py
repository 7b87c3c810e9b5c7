"""Rules: short safety criteria, kept as data (``conf/rules/*.yaml``) so users add or swap sets without code changes.

Each rule has a ``name`` (a column name in every table), a ``text`` (the criterion a rater is asked about) and, for
the embedded zero-shot rater, a ``follows``/``violates`` pair of descriptions of responses that do and do not meet it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class RuleError(ValueError):
    """A rule set that cannot be used; the message names the field and the fix."""


@dataclass(frozen=True)
class Rule:
    name: str
    text: str
    follows: str = ""
    violates: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "text": self.text, "follows": self.follows, "violates": self.violates}


def load_rules(rules: Iterable[Mapping[str, Any]] | Mapping[str, Any], min_rules: int = 2) -> list[Rule]:
    """Build and check a rule list from config (a list of mappings, or a mapping with a ``rules`` list).

    Checks: at least ``min_rules`` rules (composition needs two), unique snake_case names, non-empty texts.
    """
    if isinstance(rules, Mapping):
        if "rules" not in rules:
            raise RuleError(f"rules: expected a list of rules or a mapping with key 'rules'; got keys {sorted(rules)}")
        rules = rules["rules"]
    out: list[Rule] = []
    for i, item in enumerate(rules):
        item = dict(item)
        name, text = str(item.get("name", "")).strip(), str(item.get("text", "")).strip()
        if not _NAME.match(name):
            raise RuleError(f"rules[{i}].name={name!r}: use a snake_case identifier such as 'no_violence'")
        if not text:
            raise RuleError(f"rules[{i}] ({name}): 'text' is empty; write the criterion the rater is asked about")
        unknown = set(item) - {"name", "text", "follows", "violates"}
        if unknown:
            raise RuleError(f"rules[{i}] ({name}): unknown field(s) {sorted(unknown)}; allowed: name, text, follows, violates")
        out.append(Rule(name, text, str(item.get("follows", "")).strip(), str(item.get("violates", "")).strip()))
    names = [r.name for r in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise RuleError(f"rules: duplicate name(s) {dupes}; every rule needs its own name")
    if len(out) < min_rules:
        raise RuleError(
            f"rules: {len(out)} rule(s) given; ENCORE composes at least {min_rules}. Fix: add rules to the set "
            "(see conf/rules/safety10.yaml)"
        )
    return out
