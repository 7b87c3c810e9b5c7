"""Figures draw any rule name (issue 33): the font is DejaVu Sans with the fallbacks installed here (matplotlib falls
back glyph by glyph), and a character no installed font has is said once, in our words, with the package to install
(it would draw as a box)."""

import logging
import warnings

import matplotlib.pyplot as plt
import pandas as pd

from encore.report import plots, style
from encore.report.style import Names

STATS = pd.DataFrame({"rule": ["a", "b", "c"], "entropy": [0.5, 0.9, 1.3], "accuracy": [0.7, 0.6, 0.5],
                      "dataset": "x"})


def draw(names: list[str]) -> list[str]:
    """Draw and save the entropy figure with these display names; the glyph warnings matplotlib gave."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        fig = plots.draw_entropy_vs_accuracy(STATS, None, Names.from_config({"rules": dict(zip("abc", names))}))
        fig.savefig(__import__("io").BytesIO(), format="png")
        plt.close(fig)
    return [str(w.message) for w in seen if "missing from font" in str(w.message)]


def test_a_glyph_dejavu_lacks_draws_from_a_fallback_font():
    """⌚ (U+231A) is not in DejaVu Sans; STIX, which ships with matplotlib, has it: no box, no warning. With
    DejaVu Sans alone (the font before this change) matplotlib warns that the glyph is missing."""
    assert "STIXGeneral" in style.font_families() and style.missing_glyphs(["Watch ⌚"]) == []
    assert draw(["Watch ⌚", "No hate", "Tone"]) == []


def test_a_glyph_no_installed_font_has_is_said_once_with_the_fix(caplog, monkeypatch):
    """A CJK name where no CJK font is installed (forced here by leaving only DejaVu Sans): one warning naming each
    character and the Debian package, instead of matplotlib's warning per glyph and drawing."""
    monkeypatch.setattr(style, "font_families", lambda: (style.FONT,))
    monkeypatch.setattr(style, "_WARNED", set())
    with caplog.at_level(logging.WARNING, logger="encore.report.style"):
        glyph_warnings = draw(["無害", "No hate", "Tone"])
    said = [r.getMessage() for r in caplog.records if "no installed font" in r.getMessage()]
    assert len(said) == 1 and "無 (U+7121)" in said[0] and "fonts-noto-cjk" in said[0], said
    assert glyph_warnings == []


def test_a_cjk_name_draws_where_a_cjk_font_is_installed():
    """Where this machine has a CJK font among the fallbacks (fonts-noto-cjk, fonts-wqy-zenhei), the name draws with
    it; where it has none, the warning above is the answer (checked there), so this test says which it saw."""
    if style.missing_glyphs(["無害"]):
        assert not any(f in style.font_families() for f in style.FALLBACKS[:9])
        return
    assert draw(["無害", "No hate", "Tone"]) == []
