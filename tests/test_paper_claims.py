"""Our rules are never called the paper's: the paper's rule texts are not published and every rule set here was
written for this project, so wherever the paper's numbers stand beside ours the reader is told the rules differ."""

import re

from conftest import CONF, ROOT

CLAIM = re.compile(r"paper'?s\s+(ten|10|safety|own\s+ten)?\s*(safety\s+)?rules\b(?!\s*(differ|;|\)))", re.I)


def _texts():
    for pattern in ("conf/**/*.yaml", "docs/*.md", "README.md", "src/**/*.py", "notebooks/*.ipynb"):
        for path in ROOT.glob(pattern):
            yield path, path.read_text(encoding="utf-8")


def test_no_file_calls_our_rules_the_papers():
    found = [(p.relative_to(ROOT), m.group(0)) for p, text in _texts() for m in CLAIM.finditer(text)
             if "own rules" not in text[max(0, m.start() - 4): m.end() + 4]]
    assert not found, found


def test_where_the_papers_numbers_are_quoted_the_rules_are_said_to_differ():
    corr = (CONF / "experiment" / "paper_correlation.yaml").read_text()
    assert "rules: safety10          # ten safety rules written for this project" in corr
    assert "paper (its own rules and rater; ours differ)" in (ROOT / "docs" / "experiments.md").read_text()
    from encore.report.style import Names
    from encore.run.summary import summary_text

    m = {"dataset": "hh-rlhf-harmless", "correlation": {"pearson_r": -0.2, "n_rules": 10, "n_pairs": 50},
         "main_table": [{"method": "encore", "safety": 70.0}]}
    text = summary_text(m, Names.from_config(None), {"pearson_r": {"hh-rlhf-harmless": "-0.84"}, "safety": {"encore": 88.5}})
    quoted = [line for line in text.splitlines() if "paper:" in line]
    assert len(quoted) == 2 and all("(the paper's own rules; this run's rules differ)" in line for line in quoted)
