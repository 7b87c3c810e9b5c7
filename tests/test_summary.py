"""Each run ends with a plain summary of what it found (logged and in summary.txt), with the paper's number beside
ours for a paper experiment."""

from encore.report.style import Names
from encore.run.summary import summary_text

TABLE = [{"method": "encore", "safety": 70.0, "safety_ci_low": 61.0, "safety_ci_high": 77.0},
         {"method": "uniform", "safety": 68.0, "safety_ci_low": 60.0, "safety_ci_high": 75.0},
         {"method": "gating", "safety": 76.4, "safety_ci_low": 70.0, "safety_ci_high": 82.0}]
SIG = [{"method": "gating", "reference_minus_method": -6.4, "p_value": 0.01, "p_holm": 0.02},
       {"method": "uniform", "reference_minus_method": 2.0, "p_value": 0.3, "p_holm": 0.3}]


def test_the_summary_names_encore_against_the_best_baseline_and_the_papers_numbers():
    m = {"job": "reproduce", "dataset": "hh-rlhf-harmless", "train_pairs": 10, "setup": {"rater": "r", "backbone": "b"},
         "correlation": {"pearson_r": -0.5, "pearson_r_ci_low": -0.8, "pearson_r_ci_high": -0.1, "pearson_p": 0.04,
                         "spearman_rho": -0.4, "n_rules": 10, "n_pairs": 10},
         "main_table": TABLE, "significance": SIG}
    paper = {"pearson_r": {"hh-rlhf-harmless": "-0.84 to -0.87"}, "safety": {"encore": 88.5, "gating": 86.0}}
    text = summary_text(m, Names.from_config(None), paper)
    assert "Pearson r = -0.50 (95% CI -0.80 to -0.10, pair bootstrap, rules fixed), p = 0.04 over K = 10 rules" in text
    assert "paper: r = -0.84 to -0.87 (the paper's own rules; this run's rules differ)" in text
    assert "ENCORE 70.0 (95% CI 61.0 to 77.0) vs best baseline Gating (MoE) 76.4" in text
    assert "-6.4 points, Holm-adjusted p = 0.02" in text
    assert ("paper: ENCORE 88.5, Gating (MoE) 86.0 (the paper's own rules; this run's rules differ)  (ours: ENCORE 70.0, "
            "Gating (MoE) 76.4)") in text


def test_a_correlation_run_writes_its_summary_to_its_log_and_draws_its_figures(tmp_path, cache, caplog):
    import logging

    from encore.run.pipeline import run_correlation

    from conftest import make_cfg

    with caplog.at_level(logging.INFO, logger="encore.run.pipeline"):
        m = run_correlation(make_cfg("data.limit=10", cache=cache), tmp_path / "run")
    text = (tmp_path / "run" / "summary.txt").read_text()
    assert {p.name for p in (tmp_path / "run" / "figures").iterdir()} >= {"entropy_vs_accuracy.png",
                                                                        "rating_distributions.png"}
    assert text.strip() == m["summary"] and "study: entropy vs accuracy over 10 rules and 10 pairs" in text
    assert any("what this run found" in r.getMessage() and m["summary"].splitlines()[-1] in r.getMessage()
               for r in caplog.records)


def test_the_summary_says_what_each_fitted_method_was_fitted_on():
    table = [*TABLE, {"method": "bt_optimized", "safety": 77.0, "fitted_on": "5-fold cross-fitted probe heads"}]
    table[0] = {**table[0], "fitted_on": float("nan")}  # a method fitted on nothing (pandas writes NaN)
    m = {"job": "reproduce", "dataset": "demo", "train_pairs": 10, "setup": {}, "main_table": table, "significance": SIG}
    text = summary_text(m, Names.from_config(None))
    assert text.splitlines()[-2] == "fitted: BT-optimised on 5-fold cross-fitted probe heads"  # before the scores
