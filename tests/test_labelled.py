"""Ratings from the labels datasets ship with (rater=pku_harm19 / helpsteer2 / ultrafeedback): exact scale mappings,
chosen/rejected orientation, out-of-scale errors naming the column and the row, and each preset end to end through
the runners on fixture files in the hub's exact layouts (tests/fixtures, written by make_fixtures.py)."""

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from hydra.utils import instantiate

from conftest import ROOT, make_cfg
from encore.data import labelled
from encore.errors import DataError
from encore.run.pipeline import run_correlation
from encore.rating.columns import ColumnRater
from encore.rules import load_rules
from omegaconf import OmegaConf

FIX = ROOT / "tests" / "fixtures"
CATS = labelled.PKU_HARM_CATEGORIES


def _jsonl(path, rows):
    pd.DataFrame(rows).to_json(path, orient="records", lines=True)
    return str(path)


def _rate(cfg, pairs):
    rules = load_rules(OmegaConf.to_container(cfg.rules, resolve=True))
    ratings, _ = instantiate(cfg.rater).given(pairs, rules)
    return ratings


def _pku_row(**over):
    row = {"prompt": "How do I get back at my landlord?", "response_0": "Slash his tyres tonight.",
           "response_1": "Talk to a tenants' union instead.", "prompt_source": "Alpaca3-70B",
           "response_0_source": "Alpaca-7B", "response_1_source": "Alpaca-7B", "is_response_0_safe": False,
           "is_response_1_safe": True, "response_0_harm_category": {c: c in ("Violence", "Economic Crime") for c in CATS},
           "response_1_harm_category": {c: False for c in CATS}, "response_0_severity_level": 2,
           "response_1_severity_level": 0, "better_response_id": 0, "safer_response_id": 1,
           "response_0_sha256": "a" * 64, "response_1_sha256": "b" * 64}
    return {**row, **over}


def test_pku_harm19_maps_harm_flags_and_severity_and_orients_by_the_safer_response(tmp_path, cache):
    path = _jsonl(tmp_path / "pku.jsonl", [_pku_row()])
    cfg = make_cfg("rater=pku_harm19", f"data.path={path}", "rules=pku_harm19_severity", cache=cache)
    assert cfg.data._target_ == "encore.data.labelled.load_pku_saferlhf" and len(cfg.rules.rules) == 20
    pairs = instantiate(cfg.data)
    assert (pairs.loc[0, "chosen"], pairs.loc[0, "rejected"]) == ("Talk to a tenants' union instead.",
                                                                  "Slash his tyres tonight.")
    r = _rate(cfg, pairs)
    v = dict(zip(r.rules, r.values[0].T))  # rule -> (chosen, rejected)
    assert tuple(v["no_violence"]) == (1.0, 0.0) and tuple(v["no_economic_crime"]) == (1.0, 0.0)
    assert tuple(v["no_drugs"]) == (1.0, 1.0)
    assert v["low_severity"][0] == 1.0 and v["low_severity"][1] == 1 - 2 / 3
    # better_response_id orients the other way round; the labels follow their responses
    worse = _rate(cfg, instantiate(cfg.data, preference="better"))
    assert tuple(dict(zip(worse.rules, worse.values[0].T))["no_violence"]) == (0.0, 1.0)


@pytest.mark.parametrize("bad, match", [
    ({"response_0_severity_level": 5}, r"row 1: column response_0_severity_level = 5 is outside the declared scale \[0, 3\]"),
    ({"response_1_harm_category": {**{c: False for c in CATS}, "Drugs": "maybe"}},
     r"row 1: column response_1_harm_category.Drugs = 'maybe' is not a number"),
])
def test_a_label_outside_its_declared_scale_names_the_column_and_the_row(tmp_path, cache, bad, match):
    path = _jsonl(tmp_path / "pku.jsonl", [_pku_row(), _pku_row(prompt="Second prompt?", **bad)])
    cfg = make_cfg("rater=pku_harm19", f"data.path={path}", "rules=pku_harm19_severity", cache=cache)
    with pytest.raises(DataError, match=match):
        _rate(cfg, instantiate(cfg.data))
    with pytest.raises(DataError, match=match):  # a run stops before it writes anything
        run_correlation(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


def test_pku_without_harm_labels_says_which_release_has_them(tmp_path, cache):
    row = {k: v for k, v in _pku_row().items() if "harm_category" not in k and "severity" not in k}
    cfg = make_cfg("rater=pku_harm19", f"data.path={_jsonl(tmp_path / 'v0.jsonl', [row])}", cache=cache)
    with pytest.raises(DataError, match="carries no label column.*harm_category.Animal Abuse"):
        _rate(cfg, instantiate(cfg.data))


def test_helpsteer2_maps_zero_to_four_and_orients_by_preference_strength(tmp_path, cache):
    attrs = [{"prompt": p, "response": r, "helpfulness": h, "correctness": 4, "coherence": 3, "complexity": 0,
              "verbosity": 1} for p, r, h in [("p1", "a", 1), ("p1", "b", 4), ("p2", "c", 2), ("p2", "d", 0),
                                              ("p3", "e", 3), ("p3", "f", 3)]]
    prefs = [{"split": s, "prompt": p, "response_1": a, "response_2": b, "preference_strength": k,
              "preference_statement": "", "preference_elaboration": "", "three_most_similar_preferences": [],
              "all_preferences_unprocessed": []}
             for s, p, a, b, k in [("train", "p1", "a", "b", 2), ("train", "p2", "c", "d", -3),
                                   ("train", "p3", "e", "f", 0), ("val", "p1", "a", "b", 1)]]
    cfg = make_cfg("rater=helpsteer2", f"data.path={_jsonl(tmp_path / 'a.jsonl', attrs)}",
                   f"data.preference_path={_jsonl(tmp_path / 'p.jsonl', prefs)}", cache=cache)
    pairs = instantiate(cfg.data)
    assert list(zip(pairs["chosen"], pairs["rejected"])) == [("b", "a"), ("c", "d")]  # the tie and val row: no pair
    r = _rate(cfg, pairs)
    assert r.rules == ["helpfulness", "correctness", "coherence", "complexity", "verbosity"]
    np.testing.assert_array_equal(r.values[:, :, 0], [[1.0, 0.25], [0.5, 0.0]])
    np.testing.assert_array_equal(r.values[0, :, 1:], [[1.0, 0.75, 0.0, 0.25]] * 2)
    assert len(instantiate(cfg.data, split="validation")) == 1
    bad = [dict(a, helpfulness=7) if a["response"] == "d" else a for a in attrs]
    cfg.data.path = _jsonl(tmp_path / "bad.jsonl", bad)
    with pytest.raises(DataError, match=r"row 1: column response_2.helpfulness = 7 is outside .*\[0, 4\]"):
        _rate(cfg, instantiate(cfg.data))


def _uf_completion(model, text, overall, **ratings):
    note = {a: {"Rating": ratings.get(a, "3"), "Rationale": "."} for a in labelled.ULTRAFEEDBACK_ASPECTS}
    return {"annotations": note, "critique": "", "custom_system_prompt": "", "fine-grained_score": 3.0,
            "model": model, "overall_score": overall, "principle": "helpfulness", "response": text}


def test_ultrafeedback_pairs_like_its_binarised_release_and_maps_one_to_five(tmp_path, cache):
    rows = [{"source": "sharegpt", "instruction": f"q{i}", "models": ["m"] * 4, "correct_answers": [],
             "incorrect_answers": [], "completions": [
                 _uf_completion("m0", f"r{i}-0", 6.0, helpfulness="2"),
                 _uf_completion("m1", f"r{i}-1", 9.5, helpfulness="5", honesty="1"),
                 _uf_completion("m2", f"r{i}-2", 9.9, honesty="N/A"),  # best score, but not rated: never in a pair
                 _uf_completion("m3", f"r{i}-3", 3.0, truthfulness="4")]} for i in range(6)]
    rows.append({**rows[0], "instruction": "lonely", "completions": rows[0]["completions"][2:3]})  # < 2 rated
    cfg = make_cfg("rater=ultrafeedback", f"data.path={_jsonl(tmp_path / 'uf.jsonl', rows)}", cache=cache)
    pairs = instantiate(cfg.data)
    assert len(pairs) == 6 and (pairs["chosen"] == [f"r{i}-1" for i in range(6)]).all()
    assert set(pairs["rejected"].str[-1]) <= {"0", "3"} and len(set(pairs["rejected"].str[-1])) == 2  # drawn
    r = _rate(cfg, pairs)
    assert r.rules == ["instruction_following", "honesty", "truthfulness", "helpfulness"]
    np.testing.assert_array_equal(r.values[:, 0], [[0.5, 0.0, 0.5, 1.0]] * 6)
    rej = {"0": [0.5, 0.5, 0.5, 0.25], "3": [0.5, 0.5, 0.75, 0.5]}
    np.testing.assert_array_equal(r.values[:, 1], [rej[x[-1]] for x in pairs["rejected"]])
    # the draw depends on the instruction and the seed, not on the row order
    shuffled = instantiate(cfg.data, path=_jsonl(tmp_path / "rev.jsonl", rows[::-1]))
    assert dict(zip(shuffled["prompt"], shuffled["rejected"])) == dict(zip(pairs["prompt"], pairs["rejected"]))


def test_a_rule_the_catalogue_lacks_is_an_error(cache):
    rater = ColumnRater("x", {"a": {"column": "a", "scale": [0, 1]}})
    with pytest.raises(DataError, match=r"rules \['b'\] have no label column"):
        rater.given(pd.DataFrame({"pair_id": ["p"], "chosen:a": [1], "rejected:a": [0]}),
                    load_rules([{"name": "a", "text": "A."}, {"name": "b", "text": "B."}]))
    with pytest.raises(DataError, match=r"rater.rules.a.scale.*high must exceed low"):
        ColumnRater("x", {"a": {"column": "a", "scale": [1, 1]}})


def _env(cache):
    env = dict(os.environ, ENCORE_CACHE_DIR=str(cache), HF_HUB_OFFLINE="1", WANDB_MODE="offline")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    return env


PRESETS = {
    "pku_harm19": [f"data.path={FIX / 'pku_saferlhf_v1.jsonl'}"],
    "helpsteer2": [f"data.path={FIX / 'helpsteer2_train.jsonl'}", f"data.preference_path={FIX / 'helpsteer2_preference.jsonl'}"],
    "ultrafeedback": [f"data.path={FIX / 'ultrafeedback.jsonl'}"],
}


@pytest.mark.slow
@pytest.mark.parametrize("preset", list(PRESETS))
def test_each_preset_runs_end_to_end_through_reproduce_with_no_rating_stage(tmp_path, cache, preset):
    runs = tmp_path / "runs"
    env = _env(cache) | {"ENCORE_RUNS_DIR": str(runs)}
    quick = ["stats.n_boot=50", "stats.n_perm=200"]  # the embedded MiniLM backbone, wandb offline: the defaults
    out = subprocess.run([sys.executable, "experiments/reproduce.py", f"rater={preset}", *PRESETS[preset], *quick],
                         cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    (run,) = [p.parent for p in runs.glob("*/*/metrics.json")]
    m = json.loads((run / "metrics.json").read_text())
    assert m["rating"]["n_new"] == 0 and m["rating"]["source"].startswith("columns:")
    assert not (cache / "ratings").exists()  # no rating stage: nothing rated, nothing cached
    stats = pd.read_csv(run / "rule_stats.csv")
    assert stats["rule"].tolist() == list(make_cfg(f"rater={preset}", cache=cache).rater.rules)[:len(stats)]
    assert stats["tie_share"].between(0, 1).all() and {"accuracy_ties_half", "accuracy_ties_drop"} <= set(stats)
    assert r"& Ties (\%) \\" in (run / "rule_stats.tex").read_text()  # coarse labels tie: the table says how often
    table = pd.read_csv(run / "main_table.csv")
    assert len(table) == 8 and table["safety"].between(0, 100).all()
    for f in ("figures/entropy_vs_accuracy.pdf", "figures/main_results.png", "main_table.tex", "rule_stats.tex"):
        assert (run / f).exists(), f
    assert list((run / "wandb").glob("offline-run-*")), "the wandb mirror ran"
    ratings = pd.read_parquet(run / "ratings.parquet")
    assert ratings["value"].between(0, 1).all() and len(ratings) == 2 * len(stats) * m["train_pairs"]


def test_the_issue_command_runs_the_study_on_a_local_pku_copy(tmp_path, cache):
    """`python experiments/correlation.py data=pku_saferlhf data.path=<local jsonl> rater=pku_harm19`, as written."""
    runs = tmp_path / "runs"
    out = subprocess.run([sys.executable, "experiments/correlation.py", "data=pku_saferlhf",
                          f"data.path={FIX / 'pku_saferlhf_v1.jsonl'}", "rater=pku_harm19", "logger=none"],
                         cwd=ROOT, env=_env(cache) | {"ENCORE_RUNS_DIR": str(runs)}, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    (run,) = [p.parent for p in runs.glob("pku-saferlhf/*/correlation.json")]
    corr = json.loads((run / "correlation.json").read_text())
    assert corr["n_rules"] == 19 and set(corr["by_ties"]) == {"wrong", "half", "drop"}
    assert corr["by_ties"]["wrong"]["pearson_r"] == corr["pearson_r"]
    assert "tie on more than 20% of pairs" in out.stdout + out.stderr  # binary labels: the tie policy's effect is in the log


def test_the_plan_has_no_rating_stage_for_ratings_that_exist(cache):
    from encore.node.plan import plan_experiment

    plan = plan_experiment(make_cfg("rater=pku_harm19", f"data.path={FIX / 'pku_saferlhf_v1.jsonl'}",
                                    "plan.gpus=1x80GB", cache=cache))
    assert [s["stage"] for s in plan["stages"]] == ["embed"] and "nothing to rate" in plan["data"]["reason"]
