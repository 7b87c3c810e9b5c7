"""`--help` describes the app and lists exactly the groups one swaps, each with the options conf/ holds; rule texts
and the full config stay out of it (`--cfg job` prints those)."""

import re

from hydra import compose, initialize_config_dir

from conftest import CONF

HIDDEN = {"accelerate", "arch", "bench"}  # included by other configs or read by other tools, never swapped


def help_text() -> str:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", return_hydra_config=True).hydra.help.template


def test_help_lists_exactly_the_swappable_groups_with_their_options():
    text = help_text()
    block = text.split("== Groups you can swap (group=option) ==")[1].split("==")[0]
    listed = dict(re.findall(r"^([\w/]+): (.+)$", block, flags=re.M))
    groups = {p.name for p in CONF.iterdir() if p.is_dir() and p.name != "hydra"} - HIDDEN
    assert set(listed) == groups | {"hydra/launcher"}
    for group, options in listed.items():
        assert options.split(", ") == sorted(p.stem for p in (CONF / group).glob("*.yaml")), group


def test_help_describes_the_app_without_rule_texts():
    text = help_text()
    assert re.match(r"(\$\{hydra.help.app_name\}|encore): ENCORE", text) and "softmax(-H_k / tau)" in text
    assert "does not encourage" not in text and "$CONFIG" not in text and "$APP_CONFIG_GROUPS" not in text
