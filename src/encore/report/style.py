"""One look for every figure: sizes for one- and two-column layouts, fonts that embed as TrueType (``pdf.fonttype``
42: conference and journal checkers reject Type 3), the Okabe–Ito colour-blind-safe palette, PNG at 300 dpi beside
each PDF, and the names a paper uses for methods, rules, datasets and RewardBench subsets (config overrides win).
ENCORE is drawn in the same highlight colour everywhere.
"""

from __future__ import annotations

import functools
import json
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

log = logging.getLogger(__name__)

ONE_COL, TWO_COL = 3.3, 6.9  # inches: one and two columns of a typical two-column paper
OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
ENCORE = "#D55E00"  # vermillion: ENCORE in every figure
OTHER = "#0072B2"  # blue: every other method
MUTED = "#7F7F7F"

METHODS = {"encore": "ENCORE", "uniform": "Uniform", "random": "Random", "single_rule": "Single rule",
           "single_rule_random": "Single rule (random)", "bt_optimized": "BT-optimised",
           "bt_single_head": "Single-head BT", "gating": "Gating (MoE)", "llm_judge": "LLM-as-a-judge",
           "tau_to_inf": "Uniform (τ→∞)", "tau_to_zero": "Lowest-entropy rule (τ→0)", "topk": "Top-k rules"}
DATASETS = {"hh-rlhf-harmless": "HH-RLHF", "pku-saferlhf": "PKU-SafeRLHF", "pku-saferlhf-30k": "PKU-SafeRLHF",
            "hh-rlhf+pku-saferlhf": "HH-RLHF + PKU-SafeRLHF", "demo-train": "Demo"}
SUBSETS = {"refusals-dangerous": "Refusals (dangerous)", "refusals-offensive": "Refusals (offensive)",
           "xstest-should-refuse": "XSTest (refuse)", "xstest-should-respond": "XSTest (respond)",
           "donotanswer": "Do-Not-Answer"}
NAMES_FILE = "display_names.json"


@dataclass
class Names:
    """Display names; a key without an entry is shown tidied (``no_hate`` -> "No hate")."""

    methods: dict[str, str] = field(default_factory=dict)
    rules: dict[str, str] = field(default_factory=dict)
    datasets: dict[str, str] = field(default_factory=dict)
    subsets: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_config(cls, node: Any = None) -> "Names":
        """Defaults, overridden by ``figures.names`` (a mapping with methods / rules / datasets / subsets)."""
        given = {} if node is None else (node if isinstance(node, dict) else _plain(node))
        return cls(**{k: {**dict(d), **dict(given.get(k) or {})}
                      for k, d in (("methods", METHODS), ("rules", {}), ("datasets", DATASETS), ("subsets", SUBSETS))})

    @classmethod
    def from_run(cls, run_dir: Path | None) -> "Names":
        """The names a run recorded (so figures rebuilt from run directories alone keep them), else defaults."""
        p = Path(run_dir) / NAMES_FILE if run_dir else None
        return cls(**json.loads(p.read_text())) if p is not None and p.exists() else cls.from_config()

    def as_dict(self) -> dict[str, dict[str, str]]:
        return {"methods": self.methods, "rules": self.rules, "datasets": self.datasets, "subsets": self.subsets}

    def method(self, key: str) -> str:
        return self.methods.get(key, _tidy(key))

    def rule(self, key: str) -> str:
        return self.rules.get(key, _tidy(key))

    def dataset(self, key: str) -> str:
        return self.datasets.get(key, str(key))

    def subset(self, key: str) -> str:
        return self.subsets.get(key, str(key))


def _tidy(key: str) -> str:
    text = str(key).replace("_", " ").strip()
    return text[:1].upper() + text[1:]


def _plain(node: Any) -> dict:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(node)


def unit_of(stats: Any) -> str:
    """The entropy unit of rule statistics (``rule_stats.csv``'s ``entropy_unit``, from ``study.log_base``); runs
    written before that column took nats, the only base they could have used for a figure."""
    units = list(dict.fromkeys(stats["entropy_unit"].dropna())) if "entropy_unit" in stats else []
    return " / ".join(units) if units else "nats"


def color(method: str) -> str:
    return ENCORE if method == "encore" else OTHER


FONT = "DejaVu Sans"  # matplotlib's own: always there
# Tried in this order for a glyph DejaVu Sans lacks (matplotlib falls back glyph by glyph along font.family), the
# ones installed are used: CJK (Debian fonts-noto-cjk, fonts-wqy-zenhei; IPA fonts), symbols and monochrome emoji
# (fonts-noto-core, fonts-symbola; STIX ships with matplotlib). Colour-bitmap emoji fonts (Noto Color Emoji) are left
# out: matplotlib's renderer cannot draw them.
FALLBACKS = ("Noto Sans CJK JP", "Noto Sans CJK SC", "Noto Sans CJK TC", "Noto Sans CJK KR", "WenQuanYi Zen Hei",
             "WenQuanYi Micro Hei", "Droid Sans Fallback", "IPAexGothic", "IPAGothic", "Noto Sans Symbols 2",
             "Noto Sans Symbols", "Symbola", "STIXGeneral")
FONT_HINT = ("install a font that has them (Debian: apt-get install fonts-noto-cjk for Chinese, Japanese and Korean, "
             "fonts-symbola for emoji and symbols), then remove matplotlib's font cache (~/.cache/matplotlib) so it "
             "finds the font, or rename the rules with figures.names.rules")


@functools.lru_cache(maxsize=1)
def font_families() -> tuple[str, ...]:
    """DejaVu Sans, then every font of :data:`FALLBACKS` matplotlib can find here."""
    from matplotlib import font_manager

    have = {f.name for f in font_manager.fontManager.ttflist}
    return (FONT, *(f for f in FALLBACKS if f in have))


@functools.lru_cache(maxsize=None)
def _charmap(family: str) -> frozenset[int]:
    from matplotlib import font_manager, ft2font

    path = font_manager.findfont(font_manager.FontProperties(family=family), fallback_to_default=False)
    return frozenset(ft2font.FT2Font(path).get_charmap())


def missing_glyphs(texts: Iterable[str]) -> list[str]:
    """The characters of ``texts`` that no font of :func:`font_families` has (they would draw as boxes)."""
    chars = dict.fromkeys(c for t in texts for c in str(t) if not c.isspace() and ord(c) > 0x7F)
    return [c for c in chars if not any(ord(c) in _charmap(f) for f in font_families())]


_WARNED: set[str] = set()


def check_glyphs(texts: Iterable[str]) -> list[str]:
    """Warn once per set of characters that no installed font can draw (see :data:`FONT_HINT`), in place of
    matplotlib's warning per glyph and drawing; returns them."""
    missing = missing_glyphs(texts)
    key = "".join(missing)
    if missing and key not in _WARNED:
        _WARNED.add(key)
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .* missing from font", category=UserWarning)
        log.warning("figure names use characters no installed font has, drawn as boxes: %s; %s",
                    " ".join(f"{c} (U+{ord(c):04X})" for c in missing), FONT_HINT)
    return missing


def apply() -> None:
    """The paper theme (idempotent; every drawing function calls it first): seaborn's ``paper`` context and
    ``ticks`` style with the Okabe–Ito palette, then the project's sizes, TrueType fonts and 300-dpi PNGs; the font is
    DejaVu Sans with the installed fallbacks of :data:`FALLBACKS`, so a CJK or emoji rule name draws where a font has
    it (:func:`check_glyphs` warns where none does)."""
    import matplotlib

    matplotlib.use("Agg")
    import seaborn as sns

    # a fallback font with one weight (WenQuanYi Zen Hei: 500) is used as it is; matplotlib says so per text
    logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)

    sns.set_theme(context="paper", style="ticks", palette=OKABE_ITO, font=list(font_families()), rc={
        "pdf.fonttype": 42, "ps.fonttype": 42, "svg.fonttype": "none",  # TrueType, never Type 3
        "font.size": 7, "axes.titlesize": 7.5, "axes.labelsize": 7,
        "xtick.labelsize": 6.5, "ytick.labelsize": 6.5, "legend.fontsize": 6.5, "legend.frameon": False,
        "axes.spines.top": False, "axes.spines.right": False, "axes.grid": False, "axes.linewidth": 0.6,
        "xtick.major.width": 0.6, "ytick.major.width": 0.6, "lines.linewidth": 1.2, "lines.markersize": 4,
        "savefig.dpi": 300, "figure.dpi": 100,
    })
