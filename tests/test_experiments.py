"""Every paper experiment composes with the hub ids it names, and runs end to end here once its model, rater and data
are swapped for tiny/offline ones by override (the stages, methods and statistics stay the paper's)."""

import json

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from encore.run.pipeline import build, run_correlation, run_evaluate, run_reproduce, run_train_rm

from conftest import CONF, SHARED_HH, make_cfg

PAPER = ["paper_correlation", "paper_main_table", "paper_backbone_fsfairx", "tau_sweep", "ablation_topk"]
# The offline stand-ins: a tiny random Llama rater/judge, a tiny random Llama backbone, the embedded demo pairs.
STUDY = ["data=demo", "data.limit=16", "rater=hf_tiny", "logger=none"]
OFFLINE = [*STUDY, "eval=demo", "eval.subsets=[donotanswer,xstest-should-respond]", "model=tiny_decoder",
           "train.max_steps=2", "train.batch_size=4", "train.progress=false",
           "train.val_frac=0.25"]  # 4 of 16 pairs held out: what bt_optimized and gating are fitted on


def paper_cfg(name: str, *overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=[f"experiment={name}", *overrides], return_hydra_config=True)


def test_paper_experiments_name_the_papers_hub_ids():
    main = paper_cfg("paper_main_table")
    assert main.model.name_or_path == "Skywork/Skywork-Reward-Llama-3.1-8B"
    assert main.rater.model == "meta-llama/Meta-Llama-3-70B-Instruct"
    assert main.eval.hub_id == "allenai/reward-bench" and list(main.eval.subsets) == [
        "refusals-dangerous", "refusals-offensive", "xstest-should-refuse", "xstest-should-respond", "donotanswer"]
    assert (main.data.parts.hh.hub_id, main.data.parts.pku.hub_id) == ("Anthropic/hh-rlhf", "PKU-Alignment/PKU-SafeRLHF-30K")
    assert main.train.lr == 2e-5 and main.train.epochs == 1 and main.method.encore.tau == 2.0
    assert set(main.method) == {"encore", "uniform", "random", "single_rule", "single_rule_random", "bt_optimized",
                                "bt_single_head", "gating", "llm_judge"}
    assert paper_cfg("paper_backbone_fsfairx").model.name_or_path == "sfairXC/FsfairX-LLaMA3-RM-v0.1"
    corr = paper_cfg("paper_correlation")
    assert corr.hydra.sweeper.params.data.split(",") == ["hh_rlhf_harmless", "pku_saferlhf_30k", "hh_pku_combined"]
    # the paper's ~70k training pairs: HH-RLHF harmless-base train + PKU-SafeRLHF-30K train
    assert (main.data.parts.hh.split, main.data.parts.pku.hub_id, main.data.parts.pku.split) == (
        "train", "PKU-Alignment/PKU-SafeRLHF-30K", "train")
    taus = [float(t) for t in paper_cfg("tau_sweep").hydra.sweeper.params["method.encore.tau"].split(",")]
    assert len(taus) == 20 and 2.0 in taus and taus == sorted(taus)
    assert paper_cfg("ablation_topk").hydra.sweeper.params["method.k"] == "range(1,11)"


@pytest.mark.parametrize("launcher, target", [("local", "JoblibLauncher"), ("slurm", "SlurmLauncher"),
                                              ("slurm_cpu", "SlurmLauncher")])
def test_launcher_configs_compose(launcher, target):
    cfg = paper_cfg("tau_sweep", f"hydra/launcher={launcher}")
    assert cfg.hydra.launcher._target_.endswith(target)
    if launcher == "slurm_cpu":  # sized for cache-only jobs: no GPU, a few cores
        assert cfg.hydra.launcher.gpus_per_node == 0 and cfg.hydra.launcher.mem_gb <= 32


def test_paper_correlation_runs_offline(tmp_path, cache):
    m = run_correlation(paper_cfg("paper_correlation", *STUDY, f"cache_dir={cache}"), tmp_path / "run")
    assert m["experiment"] == "paper_correlation" and m["correlation"]["n_rules"] == 10
    assert -1 <= m["correlation"]["pearson_r"] <= 1


@pytest.mark.parametrize("name", ["paper_main_table", "paper_backbone_fsfairx"])
def test_paper_main_tables_run_offline(tmp_path, cache, name):
    m = run_reproduce(paper_cfg(name, *OFFLINE, "stats.n_boot=50", "stats.n_perm=200", f"cache_dir={cache}"),
                      tmp_path / "run")
    table = pd.read_csv(tmp_path / "run" / "main_table.csv").set_index("method")
    assert set(table.index) == {"encore", "uniform", "random", "single_rule", "single_rule_random", "bt_optimized",
                                "bt_single_head", "gating", "llm_judge"}
    assert table["safety"].between(0, 100).all() and (table["safety_ci_low"] <= table["safety"]).all()
    assert table.loc["random", "n_seeds"] == 10 and "position_agreement" in table.columns
    sig = pd.read_csv(tmp_path / "run" / "significance.csv")
    assert len(sig) == len(table) - 1  # ENCORE against every other method
    assert "model_dir" in m["heads"]  # the fine-tuning path ran


@pytest.mark.parametrize("name, expect", [("tau_sweep", {"encore", "tau_to_inf", "tau_to_zero", "single_rule"}),
                                          ("ablation_topk", {"topk"})])
def test_sweep_experiments_run_one_job_offline(tmp_path, cache, name, expect):
    cfg = paper_cfg(name, *OFFLINE, "stats.n_boot=39", "stats.n_perm=100", f"cache_dir={cache}")
    assert cfg.cache_only  # a sweep job only reads caches: fill them first, as the main table's run would
    run_train_rm(cfg, tmp_path / "filled")
    run_evaluate(cfg, tmp_path / "r")
    table = pd.read_csv(tmp_path / "r" / "main_table.csv").set_index("method")
    assert set(table.index) == expect
    if name == "tau_sweep":  # the limits: τ → ∞ is uniform weights, τ → 0 one rule
        w = pd.read_csv(tmp_path / "r" / "weights.csv").set_index("method")
        assert w.loc["tau_to_inf"].nunique() == 1 and (w.loc["tau_to_zero"] > 0).sum() == 1


@pytest.mark.skipif(not SHARED_HH.exists(), reason="../shared/data HH-RLHF file not present")
def test_combined_data_joins_both_datasets(tmp_path, cache):
    pku = tmp_path / "pku.jsonl"
    rows = [{"prompt": f"How do I do thing {i}?", "response_0": f"Safe answer {i}.", "response_1": f"Unsafe answer {i}.",
             "safer_response_id": i % 2, "better_response_id": 0} for i in range(6)]
    pd.DataFrame(rows).to_json(pku, orient="records", lines=True)
    cfg = make_cfg("data=hh_pku_combined", f"data.parts.hh.path={SHARED_HH}", "data.parts.hh.split=test",
                   "data.parts.hh.limit=10", f"data.parts.pku.path={pku}", cache=cache)
    pairs = build(cfg.data)
    assert pairs["subset"].value_counts().to_dict() == {"hh-rlhf-harmless": 10, "pku-saferlhf": 6}
    assert pairs["pair_id"].is_unique
    m = run_correlation(cfg, tmp_path / "run")
    assert m["dataset"] == "hh-rlhf+pku-saferlhf"
    assert m["train_pairs"] == 16 and m["train_pairs_by_subset"] == {"hh-rlhf-harmless": 10, "pku-saferlhf": 6}
    assert json.loads((tmp_path / "run" / "correlation.json").read_text())["n_pairs"] == 16


@pytest.mark.parametrize("overrides, name", [([], "demo"), (["data=hh_rlhf_harmless"], "hh-rlhf-harmless"),
                                             (["data=pku_saferlhf_30k"], "pku-saferlhf-30k"),
                                             (["data=local", "data.path=mine/x.jsonl.gz"], "x"),
                                             (["experiment=paper_main_table"], "paper_main_table"),
                                             (["experiment=paper_correlation", "data=pku_saferlhf"],
                                              "paper_correlation")])
def test_runs_are_named_after_their_experiment_or_data(overrides, name):
    cfg = paper_cfg(overrides[0].split("=")[1], *overrides[1:]) if overrides and overrides[0].startswith(
        "experiment=") else None
    if cfg is None:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose(config_name="config", overrides=overrides, return_hydra_config=True)
    assert cfg.experiment_name == name
    assert f"/{name}/" in cfg.hydra.run.dir
