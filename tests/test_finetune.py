"""Fine-tuning the multi-head RM on tiny random models built from configs (a Llama decoder and a BERT encoder):
every trainable parameter moves, the loss goes down, missing ratings contribute nothing, a killed run resumes
exactly, and the export round-trips into a plain ``transformers`` model that scores like the pipeline."""

import numpy as np
import pandas as pd
import pytest
import torch
from torch.testing import assert_close

import encore.rm.finetune as ft_mod
from encore.rm.backbone import Encoder
from encore.data.demo import load_demo
from encore.rm.finetune import Finetune
from encore.rm.model import MultiHeadRM, bt_pair_loss, masked_mse, score_ids
from encore.rm.tiny import tiny_causal_config

BERT = {"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
        "intermediate_size": 64, "max_position_embeddings": 256}


def decoder() -> Encoder:
    return Encoder("tiny-llama", tokenizer="tiny-bpe", config=tiny_causal_config("llama"), pooling="last",
                   text_format="chat", device="cpu", dtype="float32", max_length=128)


def encoder() -> Encoder:
    return Encoder("tiny-bert", tokenizer="embedded:all-MiniLM-L6-v2", config=BERT, pooling="mean", device="cpu",
                   dtype="float32", max_length=128)


BACKBONES = {"decoder": decoder, "encoder": encoder}


def side_targets(n: int, k: int = 3) -> np.ndarray:
    """A learnable task: rule 0 rates chosen 0.9 and rejected 0.1, rule 1 the reverse, rule 2 a constant 0.5."""
    y = np.full((n, 2, k), 0.5)
    y[:, 0, 0], y[:, 1, 0], y[:, 0, 1], y[:, 1, 1] = 0.9, 0.1, 0.2, 0.8
    return y


def dies_at(monkeypatch, step: int) -> dict:
    """The loss raises KeyboardInterrupt (a kill) on its ``step``-th call; returns the call counter."""
    calls = {"n": 0}

    def loss(pred, target):
        calls["n"] += 1
        if calls["n"] == step:
            raise KeyboardInterrupt("killed")
        return masked_mse(pred, target)

    monkeypatch.setattr(ft_mod, "masked_mse", loss)
    return calls


def fast(**kw) -> Finetune:
    """One micro-step per optimiser step: the global batch is the micro-batch unless a test sets it."""
    kw = {"lr": 1e-3, "batch_size": 4, "val_frac": 0.0, "warmup_ratio": 0.0, "progress": False, **kw}
    return Finetune(**{"global_batch": kw["batch_size"], **kw})


def test_masked_mse_and_bt_loss_exact_values():
    pred = torch.tensor([[0.5, 0.0], [1.0, 2.0]], requires_grad=True)
    target = torch.tensor([[1.0, float("nan")], [0.0, 2.0]])
    loss = masked_mse(pred, target)
    assert_close(loss, torch.tensor((0.25 + 1.0 + 0.0) / 3))
    loss.backward()
    assert pred.grad[0, 1] == 0  # the missing rating sends no gradient
    assert_close(bt_pair_loss(torch.tensor([0.0]), torch.tensor([0.0])), torch.tensor(np.log(2), dtype=torch.float32))


@pytest.mark.parametrize("kind", ["decoder", "encoder"])
def test_one_step_changes_every_trainable_parameter(tmp_path, kind):
    enc, pairs = BACKBONES[kind](), load_demo("train").iloc[:8]
    ft = fast(max_steps=1)
    before = {n: p.detach().clone() for n, p in ft._new_rm(enc, 3).named_parameters() if p.requires_grad}
    after = dict(MultiHeadRM.load(ft.train_model(enc, pairs, side_targets(8), "mse", tmp_path, "k")).named_parameters())
    assert len(before) > 10
    assert [n for n in before if torch.equal(before[n], after[n])] == []


@pytest.mark.parametrize("kind", ["decoder", "encoder"])
def test_loss_goes_down_and_missing_head_never_moves(tmp_path, kind):
    enc, pairs = BACKBONES[kind](), load_demo("train").iloc[:32]
    y = side_targets(32)
    y[:, :, 2] = np.nan  # rule 2 never rated: its head must get no update at all
    ft = fast(max_steps=25, batch_size=8)
    start = ft._new_rm(enc, 3).heads
    d = ft.train_model(enc, pairs, y, "mse", tmp_path, "k")
    loss = pd.read_csv(d / "train_log.csv")["loss"].to_numpy()
    assert loss[-5:].mean() < 0.5 * loss[:3].mean()
    heads = MultiHeadRM.load(d).heads
    assert torch.equal(heads.weight[2], start.weight[2]) and not torch.equal(heads.weight[0], start.weight[0])
    assert (heads.bias is None) == (kind == "decoder")  # bias-free decoder heads fold into a score layer
    if heads.bias is not None:
        assert heads.bias[2] == start.bias[2]


def test_lora_trains_adapters_and_merges(tmp_path):
    enc, pairs = decoder(), load_demo("train").iloc[:32]
    ft = fast(max_steps=25, batch_size=8, lora_r=4, lora_alpha=8, lora_dropout=0.0, gradient_checkpointing=True)
    rm = ft._new_rm(enc, 3)
    assert 0 < sum(p.numel() for p in rm.parameters() if p.requires_grad) < 0.2 * sum(p.numel() for p in rm.parameters())
    d = ft.train_model(enc, pairs, side_targets(32), "mse", tmp_path, "k")
    loss = pd.read_csv(d / "train_log.csv")["loss"].to_numpy()
    assert loss[-5:].mean() < 0.5 * loss[:3].mean()
    base, merged = enc.new_model().state_dict(), MultiHeadRM.load(d).backbone.state_dict()  # no peft needed to load
    assert torch.equal(base["embed_tokens.weight"], merged["embed_tokens.weight"])  # not a LoRA target
    assert not torch.equal(base["layers.0.self_attn.q_proj.weight"], merged["layers.0.self_attn.q_proj.weight"])


def test_killed_run_resumes_to_the_same_model(tmp_path, monkeypatch):
    enc, pairs, y = decoder(), load_demo("train").iloc[:24], side_targets(24)
    ft = fast(max_steps=6, save_every=2)
    clean = MultiHeadRM.load(ft.train_model(enc, pairs, y, "mse", tmp_path / "clean", "k"))
    calls = dies_at(monkeypatch, 5)
    with pytest.raises(KeyboardInterrupt):
        ft.train_model(enc, pairs, y, "mse", tmp_path / "killed", "k")
    assert (tmp_path / "killed" / "checkpoints" / "k" / "LATEST").read_text() == "step-00000004"
    calls["n"] = 100  # past the kill: from here on the wrapper only counts
    d = ft.train_model(enc, pairs, y, "mse", tmp_path / "killed", "k")
    assert calls["n"] == 102  # resumed at the checkpoint after step 4: only steps 5 and 6 ran again
    assert len(pd.read_csv(d / "train_log.csv")) == 6 and not (tmp_path / "killed" / "checkpoints" / "k").exists()
    resumed = MultiHeadRM.load(d)
    for (n, a), (_, b) in zip(clean.state_dict().items(), resumed.state_dict().items()):
        assert_close(a, b, msg=n)


@pytest.mark.parametrize("window", ["before_rename", "before_pointer"])
def test_kill_inside_a_checkpoint_save_resumes_consistently(tmp_path, monkeypatch, window):
    """A kill while step 6 is being saved: with its directory still temporary, or renamed but not yet named by the
    pointer. Either way the rerun resumes from step 4 (weights, optimiser and step count of the same moment) and
    ends equal to an uninterrupted run."""
    import encore.rm.checkpoint as ck

    enc, pairs, y = decoder(), load_demo("train").iloc[:24], side_targets(24)
    ft = fast(max_steps=8, save_every=2)
    clean = MultiHeadRM.load(ft.train_model(enc, pairs, y, "mse", tmp_path / "clean", "k"))
    real = {"write_json": ck.write_json, "write_bytes": ck.write_bytes}
    target = "write_json" if window == "before_rename" else "write_bytes"

    def dies_at_step_6(path, data):
        if "step-00000006" in str(path) or (target == "write_bytes" and data == b"step-00000006"):
            raise KeyboardInterrupt("killed while saving step 6")
        return real[target](path, data)

    monkeypatch.setattr(ck, target, dies_at_step_6)
    with pytest.raises(KeyboardInterrupt):
        ft.train_model(enc, pairs, y, "mse", tmp_path / "killed", "k")
    root = tmp_path / "killed" / "checkpoints" / "k"
    assert (root / "LATEST").read_text() == "step-00000004"
    left = {p.name.split(".tmp-")[0] + (".tmp" if ".tmp-" in p.name else "") for p in root.glob("step-*")}
    assert left == ({"step-00000004"} if window == "before_rename"  # a failed save removes its temporary directory
                    else {"step-00000004", "step-00000006"})
    monkeypatch.setattr(ck, target, real[target])
    d = ft.train_model(enc, pairs, y, "mse", tmp_path / "killed", "k")
    assert pd.read_csv(d / "train_log.csv")["micro_step"].tolist() == list(range(8))
    for (n, a), (_, b) in zip(clean.state_dict().items(), MultiHeadRM.load(d).state_dict().items()):
        assert_close(a, b, msg=n)


def test_bt_single_head_learns_the_preference(tmp_path):
    enc, pairs = decoder(), load_demo("train")
    r = fast(max_steps=40, batch_size=8).preference_rewards(pairs, pairs, enc, tmp_path)  # (N, 2)
    assert r.shape == (len(pairs), 2) and (r[:, 0] > r[:, 1]).mean() > 0.8


def test_save_load_round_trip_scores_identically(tmp_path):
    enc, pairs = decoder(), load_demo("eval").iloc[:10]
    rm = fast()._new_rm(enc, 4).eval()
    ids = enc.tokenize(enc.pair_texts(pairs), padding=False)["input_ids"]
    a = score_ids(rm, enc.tok, ids, batch_size=3)
    rm.save_pretrained(tmp_path / "rm", enc.tok, rules=["a", "b", "c", "d"])
    b = score_ids(MultiHeadRM.load(tmp_path / "rm"), enc.tok, ids, batch_size=7)
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert not list(tmp_path.glob(".rm.tmp-*"))  # the temporary directory was renamed into place


@pytest.mark.slow  # torchao compiles its update step with inductor on first use (~20 s on 2 cores)
def test_the_one_gpu_recipe_checkpoints_and_resumes_to_the_same_model(tmp_path, monkeypatch):
    """``train=finetune_1gpu`` (bf16 weights, torchao AdamW8bit with stochastic rounding) through a checkpoint: its
    optimiser keeps each group's lr as a 0-d tensor, which the scheduler hands back; the log written at every
    checkpoint and train_log.csv hold plain numbers, and a run killed after the checkpoint resumes to the model an
    uninterrupted run trains (8-bit moments, scheduler and RNG state restored)."""
    enc, pairs, y = decoder(), load_demo("train").iloc[:16], side_targets(16)
    ft = fast(max_steps=3, save_every=1, param_dtype="bfloat16", optim="adamw_8bit", lr=1e-2)
    clean = MultiHeadRM.load(ft.train_model(enc, pairs, y, "mse", tmp_path / "clean", "k"))
    calls = dies_at(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        ft.train_model(enc, pairs, y, "mse", tmp_path / "killed", "k")
    root = tmp_path / "killed" / "checkpoints" / "k"
    state = pd.read_json(root / "step-00000002" / "encore_state.json", typ="series")
    assert [type(r["lr"]) for r in state["log"]] == [float, float]  # linear decay over 3 steps: 2/3, 1/3 of lr
    np.testing.assert_allclose([r["lr"] for r in state["log"]], [2e-2 / 3, 1e-2 / 3], rtol=1e-6)
    calls["n"] = 100
    d = ft.train_model(enc, pairs, y, "mse", tmp_path / "killed", "k")
    assert calls["n"] == 101  # only step 3 ran again
    assert pd.read_csv(d / "train_log.csv")["lr"].dtype == float
    for (n, a), (_, b) in zip(clean.state_dict().items(), MultiHeadRM.load(d).state_dict().items()):
        assert a.dtype == torch.bfloat16 or n.startswith("heads")
        assert_close(a, b, msg=n)
