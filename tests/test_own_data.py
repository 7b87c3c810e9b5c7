"""The own-data path of docs/own-ratings.md, end to end: pairs, ratings, rules and an evaluation set kept in the
user's own folder (rules found through Hydra's search path, files by path), and a run that names each of them: the
summary, the tables and the figures call the sets by their own names, never the demo's or "local"."""

import json

import numpy as np
import pandas as pd

from encore.data.names import file_stem
from encore.run.pipeline import run_reproduce

from conftest import make_cfg

RULES = ["kind", "honest", "safe"]


def own_folder(root):
    """``root/rules/mine.yaml``, ``root/pairs.jsonl`` (24 pairs), ``root/held_out.csv`` (12 pairs in two subsets) and
    ``root/ratings.csv`` (by prompt and response text, as another lab's grader would write them)."""
    (root / "rules").mkdir(parents=True)
    (root / "rules" / "mine.yaml").write_text("name: mine\nrules:\n" + "".join(
        f"  - {{name: {r}, text: The response is {r}.}}\n" for r in RULES))

    def pairs(n, tag):
        return pd.DataFrame({"prompt": [f"{tag} question {i}: how do I fix my bike?" for i in range(n)],
                             "chosen": [f"Check the chain first ({tag} {i}), then the brakes." for i in range(n)],
                             "rejected": [f"No idea {'!' * (i % 4 + 1)} ({tag} {i})" for i in range(n)]})

    train = pairs(24, "train")
    train.to_json(root / "pairs.jsonl", orient="records", lines=True)
    pairs(12, "eval").assign(subset=["bikes"] * 6 + ["brakes"] * 6).to_csv(root / "held_out.csv", index=False)
    rng = np.random.default_rng(0)
    rows = [{"prompt": p, "response": text, "rule": r, "value": float(np.clip(base + rng.normal(0, 0.2), 0, 1))}
            for p, c, x in zip(train["prompt"], train["chosen"], train["rejected"])
            for text, base in ((c, 0.7), (x, 0.4)) for r in RULES]
    pd.DataFrame(rows).to_csv(root / "ratings.csv", index=False)
    return root


def test_own_pairs_ratings_rules_and_eval_set_from_the_users_folder(tmp_path, cache, monkeypatch):
    from encore.report import plots_results

    titles, draw = [], plots_results.main_results
    monkeypatch.setattr(plots_results, "main_results", lambda *a, **k: titles.append(k["title"]) or draw(*a, **k))
    mine = own_folder(tmp_path / "mine")
    cfg = make_cfg(f"hydra.searchpath=[file://{mine}]", "rules=mine", "method=encore", "data=local",
                   f"data.path={mine}/pairs.jsonl",
                   "rater=file", f"rater.path={mine}/ratings.csv", "eval=local", f"eval.path={mine}/held_out.csv",
                   cache=cache)
    assert cfg.experiment_name == "pairs"  # runs/pairs/<time>: named after the file, not "local"
    m = run_reproduce(cfg, tmp_path / "run")
    lines = m["summary"].splitlines()
    assert lines[0] == ("reproduce on pairs (24 pairs), rater ratings file ratings.csv, backbone tiny-random-bert; "
                        "evaluation set held_out (12 pairs)")
    assert lines[1] == ("ratings: 144 read from ratings file ratings.csv (144 rows in the file, 0 match no pair, "
                        "0 pairs not in it), 0 missing")  # 24 pairs x 2 sides x 3 rules
    assert lines[-1].startswith("accuracy on held_out: ENCORE ")  # no RewardBench subsets: plain accuracy
    assert (m["eval_set"], m["eval_pairs"], m["eval_metric"], m["dataset"]) == ("held_out", 12, "accuracy", "pairs")
    assert m["correlation"]["n_rules"] == 3
    md = (tmp_path / "run" / "main_table.md").read_text()
    assert "| Method | Accuracy |" in md and "Accuracy (%) on held_out." in md and "backbone: tiny-random-bert" in md
    assert "RewardBench" not in md and "local" not in md
    meta = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert meta["setup"]["eval"] == "held_out" and meta["setup"]["data"] == "pairs"
    assert titles == ["held_out, backbone tiny-random-bert"]  # the main results figure names both


def test_the_demo_evaluation_set_is_named_as_what_it_is(demo_runs):
    run = demo_runs / "demo" / "full"
    m = json.loads((run / "metrics.json").read_text())
    assert m["eval_set"] == "demo (RewardBench layout)" and m["eval_metric"] == "Safety"
    lines = m["summary"].splitlines()
    assert lines[0] == ("reproduce on Demo (103 pairs), rater embedded:all-MiniLM-L6-v2, backbone tiny-random-bert; "
                        "evaluation set demo (RewardBench layout) (121 pairs)")
    assert lines[-1].startswith("safety on demo (RewardBench layout): ENCORE ")
    md = (run / "main_table.md").read_text()
    assert "Safety accuracy (%) on demo (RewardBench layout) per subset" in md and "RewardBench Safety" not in md


def test_the_results_title_names_the_evaluation_set_and_the_backbone():
    from encore.report.figures import results_title

    assert results_title({"eval": "RewardBench", "backbone": "Skywork/Skywork-Reward-Llama-3.1-8B"}) == (
        "RewardBench, backbone Skywork-Reward-Llama-3.1-8B")
    assert results_title({"eval": "demo (RewardBench layout)", "backbone": "embedded:all-MiniLM-L6-v2"}) == (
        "demo (RewardBench layout), backbone all-MiniLM-L6-v2")
    assert results_title(None) == "RewardBench"  # a run from before runs recorded their evaluation set


def test_a_file_is_named_without_its_table_suffixes():
    assert [file_stem(p) for p in ("mine/pairs.jsonl.gz", "held_out.csv", "a.b.parquet", "x.gz", ".hidden")] == [
        "pairs", "held_out", "a.b", "x", ".hidden"]


def test_an_experiment_file_in_the_users_folder_composes_as_docs_own_ratings_shows_it(tmp_path):
    from hydra import compose, initialize_config_dir

    from conftest import CONF

    mine = own_folder(tmp_path / "mine")
    (mine / "experiment").mkdir()
    (mine / "experiment" / "mine.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /rules: mine\n  - override /data: local\n"
        "  - override /rater: file\n  - override /eval: local\n\nexperiment_name: mine\n"
        f"data:\n  path: {mine}/pairs.jsonl\nrater:\n  path: {mine}/ratings.csv\neval:\n  path: {mine}/held_out.csv\n")
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"hydra.searchpath=[file://{mine}]", "experiment=mine",
                                                       "method=encore", "method.tau=0.5"])
    assert [r["name"] for r in cfg.rules.rules] == RULES and cfg.experiment_name == "mine"
    assert (cfg.data.source, cfg.eval.source, cfg.rater.path, cfg.method.tau) == (
        "pairs", "held_out", f"{mine}/ratings.csv", 0.5)
