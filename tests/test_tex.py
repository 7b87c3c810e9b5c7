"""main_table.tex fits the width of a two-column paper page (AAAI: 7 in of text, 3.3 in columns): compiled with a
TeX engine when one is installed (Debian: texlive-latex-base, texlive-latex-recommended), skipped otherwise."""

import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from encore.data.rewardbench import SAFETY_COUNTS
from encore.report.style import Names
from encore.report.tables import main_table_tex

METHODS = ["encore", "uniform", "random", "single_rule", "single_rule_random", "bt_optimized", "bt_single_head",
           "gating", "llm_judge"]
ENGINE = shutil.which("pdflatex")


def paper_sized_table() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for m in METHODS:
        seeds = 10 if "random" in m else 1
        rows.append({"method": m, "n_seeds": seeds, **{s: rng.uniform(60, 99) for s in SAFETY_COUNTS},
                     "safety": rng.uniform(70, 90), "safety_std": 1.23 if seeds > 1 else 0.0})
    return pd.DataFrame(rows)


@pytest.mark.skipif(ENGINE is None, reason="no TeX engine (apt-get install texlive-latex-base texlive-latex-recommended)")
def test_main_table_fits_the_text_width_of_a_two_column_page(tmp_path):
    tex = main_table_tex(paper_sized_table(), Names.from_config(),
                         {"rater": "meta-llama/Meta-Llama-3-70B-Instruct", "backbone": "Skywork/Skywork-Reward-Llama-3.1-8B",
                          "train": "FineTuneTrainer", "data": "hh-rlhf+pku-saferlhf"})
    assert r"\begin{table*}" in tex
    doc = "\n".join([r"\documentclass[twocolumn,10pt]{article}", r"\usepackage{booktabs}",
                     r"\setlength{\textwidth}{7in}", r"\setlength{\columnsep}{0.4in}", r"\begin{document}",
                     # the tabular measured alone, then the float as the paper sets it
                     r"\newsavebox\tb", r"\sbox\tb{\small" + tex.split(r"\label{tab:main}")[1].split(r"\end{table*}")[0] + "}",
                     r"\typeout{TABLEWIDTH=\the\wd\tb}", tex, "x", r"\end{document}"])
    (tmp_path / "t.tex").write_text(doc)
    out = subprocess.run([ENGINE, "-interaction=nonstopmode", "-halt-on-error", "t.tex"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-2000:]
    width_pt = float(out.stdout.split("TABLEWIDTH=")[1].split("pt")[0])
    print(f"TABLEWIDTH {width_pt / 72.27:.2f} in")
    assert width_pt <= 7 * 72.27, f"main_table.tex is {width_pt / 72.27:.2f} in wide; the text is 7 in"
    assert "Overfull \\hbox" not in (tmp_path / "t.log").read_text()
