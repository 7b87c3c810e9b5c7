"""What only a GPU can show (``pytest -m gpu`` on a CUDA machine; skipped elsewhere). Each test says what it proves.
The vLLM parity test lives in tests/test_vllm.py."""

import numpy as np
import pandas as pd
import pytest
import torch

from encore.rm.backbone import Encoder
from encore.data.demo import load_demo
from encore.rm.finetune import Finetune
from encore.rating.hf import HFRater
from encore.rm.model import MultiHeadRM
from encore.rules import Rule
from encore.rm.tiny import tiny_causal_config

from conftest import save_tiny_llama

pytestmark = pytest.mark.gpu
RULES = [Rule("a", "The response is polite."), Rule("b", "The response refuses dangerous requests.")]
CFG = tiny_causal_config("llama", hidden=256, layers=4, heads=8)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    return save_tiny_llama(tmp_path_factory.mktemp("tiny-gpu"), hidden=256, layers=4, heads=8)[0]


def test_bf16_ratings_on_gpu_are_close_to_fp32(saved):
    """The default GPU dtype (bf16) changes ratings only at bf16's resolution: within 0.02 of fp32 on the same
    weights, with the batched prefix-reuse path against fp32 on the CPU."""
    pairs = load_demo("train").iloc[:16]
    args = (list(pairs["prompt"]), list(pairs["chosen"]), RULES)
    ref, _ = HFRater(model=saved, device="cpu", dtype="float32").rate(*args)
    bf16 = HFRater(model=saved, device="auto", dtype="auto")
    got, _ = bf16.rate(*args)
    assert next(bf16._model.parameters()).dtype == torch.bfloat16 and bf16._model.device.type == "cuda"
    assert np.abs(got - ref).max() < 0.02


def test_device_map_across_gpu_and_cpu_rates_like_one_gpu(saved):
    """Half the layers on the GPU, the rest offloaded to host RAM through accelerate: inputs go to the embedding's
    device, the prefix KV cache lives on each layer's device, and ratings match the single-GPU model."""
    pairs = load_demo("train").iloc[:8]
    args = (list(pairs["prompt"]), list(pairs["chosen"]), RULES)
    dmap = {"model.embed_tokens": 0, "model.layers.0": 0, "model.layers.1": 0, "model.layers.2": "cpu",
            "model.layers.3": "cpu", "model.norm": 0, "model.rotary_emb": 0, "lm_head": 0}
    one, _ = HFRater(model=saved, device="cuda", dtype="float32").rate(*args)
    split = HFRater(model=saved, device="cuda", dtype="float32", device_map=dmap)
    got, _ = split.rate(*args)
    assert set(map(str, split._model.hf_device_map.values())) == {"0", "cpu"}
    assert np.abs(got - one).max() < 1e-4


def test_bf16_finetune_1gpu_step_on_gpu(tmp_path):
    """train=finetune_1gpu on CUDA: bf16 weights, torchao AdamW8bit with stochastic rounding, gradient
    checkpointing, bf16 autocast; every trainable parameter moves and the loss falls."""
    enc = Encoder("tiny-llama", tokenizer="tiny-bpe", config=CFG, pooling="last", text_format="chat", device="cuda",
                  max_length=128)
    pairs = load_demo("train").iloc[:32]
    y = np.random.default_rng(0).uniform(size=(32, 2, 3))
    ft = Finetune(lr=1e-3, batch_size=8, max_steps=20, val_frac=0.0, warmup_ratio=0.0, progress=False,
                  param_dtype="bfloat16", optim="adamw_8bit", gradient_checkpointing=True)
    before = {n: p.detach().clone() for n, p in ft._new_rm(enc, 3).named_parameters()}
    d = ft.train_model(enc, pairs, y, "mse", tmp_path, "k")
    after = dict(MultiHeadRM.load(d).named_parameters())
    assert after["backbone.layers.0.self_attn.q_proj.weight"].dtype == torch.bfloat16
    assert [n for n in before if torch.equal(before[n].cpu(), after[n].cpu())] == []
    loss = pd.read_csv(d / "train_log.csv")["loss"].to_numpy()
    assert loss[-5:].mean() < loss[:3].mean()


def test_gpu_check_at_1b_passes_and_the_plan_does_not_under_count(tmp_path):
    """experiments/gpu_check.py's checks at its default GPU size (the Llama-3.2-1B shape, real tokenizers): ratings
    finite, bf16 within 0.02 of fp32, vLLM within 0.02 of hf where vLLM imports, training loss finite, and every
    stage's measured peak (torch.cuda.max_memory_allocated) at most its planned bytes."""
    from hydra import compose, initialize_config_dir

    from encore.node.gpu_check import run_gpu_check

    from conftest import CONF, needs_real_tokenizers

    if needs_real_tokenizers.args[0]:
        pytest.skip(needs_real_tokenizers.kwargs["reason"])
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="gpu_check", overrides=[f"report={tmp_path / 'r.json'}"])
    report = run_gpu_check(cfg, tmp_path)
    assert report["ok"], report["checks"]
    assert all(s["measured_bytes"] for s in report["stages"])


def test_vllm_kv_cache_on_one_rank_of_the_70b_matches_the_plan(tmp_path):
    """On a GPU with vLLM (the vLLM environment): the plan's layout for the 70B on eight of this GPU, vLLM started
    with dummy weights on one rank's shape (2 layers), its own KV-cache tokens within 10% of
    encore.scale.vllm_memory's prediction, and grouped rule prompts hitting the prefix cache more than shuffled.
    Proves the non-KV terms (profile peak, sampler warm-up, CUDA graphs) add up to what vLLM subtracts, on this GPU."""
    pytest.importorskip("vllm")
    import yaml

    from conftest import ROOT, SHARED_TOKENIZERS
    from encore.node.vllm_check import run_vllm_check
    from encore.rating.tokens import PromptTokenizer
    from encore.rules import load_rules
    from encore.scale.arch import config_from_dict, describe

    if not (SHARED_TOKENIZERS / "llama3-instruct").is_dir():
        pytest.skip("the real Llama-3 tokenizer is not here")
    rec = yaml.safe_load((ROOT / "conf" / "arch" / "llama3_70b_instruct.yaml").read_text())
    rec.pop("_name_or_path")
    arch = describe(config_from_dict(rec), "llama3-70b", "test")
    pairs = load_demo("train").iloc[:4]
    rules = load_rules(yaml.safe_load((ROOT / "conf" / "rules" / "safety10.yaml").read_text()))
    seqs = PromptTokenizer("shared:llama3-instruct").rule_ids(list(pairs["prompt"]), list(pairs["chosen"]), rules)
    r = run_vllm_check(arch, seqs, tmp_path, 2, 4096, 0.9)
    assert r["layout"]["fits"] and abs(r["ratio"] - 1) <= 0.10, r
    assert r["hit_rates"]["grouped"] > r["hit_rates"]["shuffled"], r
