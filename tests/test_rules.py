import pytest
from omegaconf import OmegaConf

from encore.rules import RuleError, load_rules

from conftest import CONF


def test_shipped_rule_set():
    rules = load_rules(OmegaConf.to_container(OmegaConf.load(CONF / "rules" / "safety10.yaml")))
    assert len(rules) == 10 and all(r.follows and r.violates for r in rules)


@pytest.mark.parametrize("bad, match", [
    ([{"name": "only_one", "text": "t"}], "at least 2"),
    ([{"name": "a", "text": "t"}, {"name": "a", "text": "u"}], "duplicate"),
    ([{"name": "Bad Name", "text": "t"}, {"name": "b", "text": "u"}], "snake_case"),
    ([{"name": "a", "text": ""}, {"name": "b", "text": "u"}], "empty"),
    ([{"name": "a", "text": "t", "weight": 2}, {"name": "b", "text": "u"}], "unknown field"),
])
def test_bad_rule_sets(bad, match):
    with pytest.raises(RuleError, match=match):
        load_rules(bad)
