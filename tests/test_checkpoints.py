"""A damaged checkpoint is never resumed: each is verified against the sizes and SHA-256 sums written when it was
saved; one that fails is set aside with a warning and training resumes from the newest intact one (or from the
start), ending at the model an uninterrupted run trains. Before: flipped bytes in model.safetensors were resumed
without a word (and the damaged model cached under models/<key>); a truncated model.safetensors, an empty
optimizer.bin or a malformed encore_state.json stopped every later run with SafetensorError / EOFError /
JSONDecodeError."""

import json
import logging
import shutil
import struct

import pandas as pd
import pytest
from torch.testing import assert_close

from encore.data.demo import load_demo
from encore.rm import checkpoint
from encore.rm.model import MultiHeadRM

from test_finetune import decoder, dies_at, fast, side_targets

STEPS, EVERY = 6, 2  # checkpoints after micro-steps 2 and 4; the kill comes in step 5


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """The model an uninterrupted run trains."""
    enc, pairs, y = decoder(), load_demo("train").iloc[:24], side_targets(24)
    return MultiHeadRM.load(fast(max_steps=STEPS, save_every=EVERY).train_model(
        enc, pairs, y, "mse", tmp_path_factory.mktemp("clean"), "k"))


def killed_in_step_5(cache, monkeypatch, keep=1) -> dict:
    """Train until a kill in step 5 (after the checkpoint of step 4); returns the loss-call counter."""
    calls = dies_at(monkeypatch, 5)
    with pytest.raises(KeyboardInterrupt):
        fast(max_steps=STEPS, save_every=EVERY, **({"keep_checkpoints": keep} if keep > 1 else {})).train_model(
            decoder(), load_demo("train").iloc[:24], side_targets(24), "mse", cache, "k")
    calls["n"] = 100  # from here on the wrapper only counts
    return calls


def flip(p):
    """Flip 2,000 bytes of the tensor data (past the safetensors header): the file still parses."""
    data = bytearray(p.read_bytes())
    start = 8 + struct.unpack("<Q", bytes(data[:8]))[0] + 64
    for i in range(start, min(start + 2000, len(data))):
        data[i] ^= 0xFF
    p.write_bytes(bytes(data))


DAMAGE = {
    "flipped_bytes": ("model.safetensors", flip),
    "truncated_model": ("model.safetensors", lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])),
    "empty_optimizer": ("optimizer.bin", lambda p: p.write_bytes(b"")),
    "malformed_state": ("encore_state.json", lambda p: p.write_text(p.read_text()[:40])),
    "no_checksums": ("encore_state.json", lambda p: p.write_text('{"micro_step": 4, "log": []}')),
}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """The checkpoint of step 4 that a run killed in step 5 leaves (accelerate's real files), kept pristine."""
    cache = tmp_path_factory.mktemp("killed")
    with pytest.MonkeyPatch.context() as mp:
        killed_in_step_5(cache, mp)
    return cache / "checkpoints" / "k" / "step-00000004"


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_checkpoint_is_set_aside_with_a_warning(tmp_path, caplog, saved, damage):
    root = tmp_path / "checkpoints"
    shutil.copytree(saved, root / saved.name)
    (root / "LATEST").write_text(saved.name)  # as the save left it
    assert checkpoint.latest(root)[1]["micro_step"] == 4  # intact: resumed
    name, spoil = DAMAGE[damage]
    spoil(root / saved.name / name)
    with caplog.at_level(logging.WARNING, logger="encore.rm.checkpoint"):
        assert checkpoint.latest(root) is None
    warning = "\n".join(r.getMessage() for r in caplog.records)
    assert "step-00000004 is damaged" in warning and "training starts from the beginning" in warning
    assert [p.name.split("-")[1] for p in root.glob("step-*")] == ["00000004.damaged"]  # set aside, not deleted


def test_a_run_resumed_over_a_damaged_checkpoint_trains_the_uninterrupted_model(tmp_path, monkeypatch, clean):
    """Flipped bytes in model.safetensors: every step runs again and models/<key> holds the model an
    uninterrupted run trains, never the damaged one."""
    calls = killed_in_step_5(tmp_path, monkeypatch)
    flip(tmp_path / "checkpoints" / "k" / "step-00000004" / "model.safetensors")
    d = fast(max_steps=STEPS, save_every=EVERY).train_model(
        decoder(), load_demo("train").iloc[:24], side_targets(24), "mse", tmp_path, "k")
    assert calls["n"] == 100 + STEPS  # nothing of the damaged checkpoint was used: every step ran again
    assert pd.read_csv(d / "train_log.csv")["micro_step"].tolist() == list(range(STEPS))
    for (n, a), (_, b) in zip(clean.state_dict().items(), MultiHeadRM.load(d).state_dict().items()):
        assert_close(a, b, msg=n)
    assert not (tmp_path / "checkpoints" / "k").exists()  # the finished training removes its checkpoints


def test_with_two_kept_a_damaged_newest_checkpoint_resumes_from_the_one_before(tmp_path, monkeypatch, caplog, clean):
    calls = killed_in_step_5(tmp_path, monkeypatch, keep=2)
    root = tmp_path / "checkpoints" / "k"
    assert sorted(p.name for p in root.glob("step-*")) == ["step-00000002", "step-00000004"]
    flip(root / "step-00000004" / "model.safetensors")
    with caplog.at_level(logging.WARNING, logger="encore.rm.checkpoint"):
        d = fast(max_steps=STEPS, save_every=EVERY, keep_checkpoints=2).train_model(
            decoder(), load_demo("train").iloc[:24], side_targets(24), "mse", tmp_path, "k")
    assert "trying step-00000002" in "\n".join(r.getMessage() for r in caplog.records)
    assert calls["n"] == 100 + STEPS - 2  # resumed after step 2
    for (n, a), (_, b) in zip(clean.state_dict().items(), MultiHeadRM.load(d).state_dict().items()):
        assert_close(a, b, msg=n)


def _train(cache):
    return fast(max_steps=STEPS, save_every=EVERY).train_model(
        decoder(), load_demo("train").iloc[:24], side_targets(24), "mse", cache, "k")


MODEL_DAMAGE = {
    "flipped_backbone_bytes": ("backbone/model.safetensors", flip),
    "truncated_heads": ("heads.pt", lambda p: p.write_bytes(p.read_bytes()[:-9])),
    "lost_tokenizer_file": ("backbone/tokenizer.json", lambda p: p.unlink()),
    "malformed_checksums": ("checksums.json", lambda p: p.write_text("{")),
    "deleted_checksums": ("checksums.json", lambda p: p.unlink()),  # issue 33: was "reused unverified"
    "lost_backbone_entry": ("checksums.json", lambda p: p.write_text(json.dumps({"files": {  # issue 33: was silent
        k: v for k, v in json.loads(p.read_text())["files"].items() if k != "backbone/model.safetensors"}}))),
}


@pytest.mark.parametrize("damage", list(MODEL_DAMAGE))
def test_a_damaged_cached_model_is_set_aside_and_trained_again(tmp_path, monkeypatch, caplog, clean, damage):
    """models/<key> carries the size and SHA-256 of its files: a damaged one is never reused (before, flipped bytes
    in the backbone were scored without a word); it is set aside with a warning and the model is trained again,
    equal to the uninterrupted run's."""
    d = _train(tmp_path)
    calls = dies_at(monkeypatch, 10 ** 9)  # counts the training steps of the next call
    assert _train(tmp_path) == d and calls["n"] == 0  # intact: reused, nothing trained
    name, spoil = MODEL_DAMAGE[damage]
    spoil(d / name)
    with caplog.at_level(logging.WARNING, logger="encore.rm.model"):
        again = _train(tmp_path)
    assert calls["n"] == STEPS  # trained again from the start
    warning = "\n".join(r.getMessage() for r in caplog.records)
    assert f"cached model {d} is damaged" in warning and "training it again" in warning
    assert [p.name.split(".")[0] for p in (tmp_path / "models").glob("k.damaged-*")] == ["k"]  # kept for a look
    for (n, a), (_, b) in zip(clean.state_dict().items(), MultiHeadRM.load(again).state_dict().items()):
        assert_close(a, b, msg=n)


def test_a_cached_model_from_before_checksums_is_reused_only_when_the_setting_says_so(tmp_path, monkeypatch, caplog):
    """Without checksums.json there is nothing to verify: reused only with ENCORE_REUSE_UNVERIFIED=1, which the
    log names; without the setting such a model is damage (the parametrized test above, deleted_checksums)."""
    d = _train(tmp_path)
    (d / "checksums.json").unlink()
    calls = dies_at(monkeypatch, 10 ** 9)
    monkeypatch.setenv("ENCORE_REUSE_UNVERIFIED", "1")
    with caplog.at_level(logging.INFO, logger="encore.cache.integrity"):
        assert _train(tmp_path) == d and calls["n"] == 0
    assert "records no checksums" in caplog.text and "reused UNVERIFIED because ENCORE_REUSE_UNVERIFIED=1" in caplog.text
