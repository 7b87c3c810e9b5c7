"""The Layout section of docs/reference.md names every module of the library and nothing that is not there, so the
documented tree cannot drift from the real one."""

import re

from conftest import ROOT

SRC = ROOT / "src" / "encore"


def documented() -> set[str]:
    """Module paths named in the ``src/encore/`` block: ``name/`` starts a subpackage line (continued by deeper
    indented lines), other lines are top-level modules followed by a description after three spaces."""
    text = (ROOT / "docs" / "reference.md").read_text().split("## Layout", 1)[1]
    lines = text.split("    src/encore/\n", 1)[1].splitlines()
    out, folder = set(), ""
    for ln in lines:
        if not ln.startswith("      "):
            break  # the next top-level folder (benchmarks/, conf/ ...)
        if m := re.match(r"\s{6}(\w+)/\s+(.*)", ln):
            folder, names = m.group(1) + "/", m.group(2)
        elif ln.startswith(" " * 7):
            names = ln
        else:
            folder, names = "", re.split(r"\s{3,}", ln.strip())[0]
        out |= {folder + n for n in re.findall(r"\b\w+\.py\b", names)}
    return out


def test_layout_section_matches_the_tree():
    real = {str(p.relative_to(SRC)) for p in SRC.rglob("*.py") if p.name != "__init__.py"}
    doc = documented()
    assert not real - doc, f"modules missing from docs/reference.md's Layout: {sorted(real - doc)}"
    assert not doc - real, f"docs/reference.md's Layout names modules that do not exist: {sorted(doc - real)}"
