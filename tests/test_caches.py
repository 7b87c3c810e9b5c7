"""Caches that do not trust their contents: a truncated, garbage, mislabelled or implausible entry is reported and
recomputed (a rating shard is moved aside and its ratings asked again), arrays never load through pickle, every
key covers what shapes the result, and shared caches respect the umask."""

import logging
import os

import numpy as np
import pytest

from encore.cache.artifacts import cached_arrays, expect, write_arrays
from encore.rm.backbone import Encoder
from encore.data.demo import load_demo
from encore.rm.probe import embed_pairs
from encore.judge import LLMJudge
from encore.methods import FitContext
from encore.rating.engine import rate_pairs
from encore.rules import Rule

from conftest import FakeRater

RULES = [Rule("a", "rule a"), Rule("b", "rule b")]


def _pickled(path, **arrays):
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def _shards(root):
    return sorted(root.rglob("shard-*.parquet"))


@pytest.mark.parametrize("damage", ["truncate", "out_of_range"])
def test_a_bad_rating_shard_is_moved_aside_and_its_ratings_asked_again(tmp_path, caplog, damage):
    pairs = load_demo("train").iloc[:8]
    first, _ = rate_pairs(pairs, RULES, FakeRater(), tmp_path, chunk_size=4, progress=False)
    shard = _shards(tmp_path)[0]
    if damage == "truncate":
        shard.write_bytes(shard.read_bytes()[:100])
    else:
        import pandas as pd

        df = pd.read_parquet(shard)
        df.loc[0, "value"] = 1.7
        df.to_parquet(shard)
    with caplog.at_level(logging.WARNING):
        again, rep = rate_pairs(pairs, RULES, FakeRater(), tmp_path, chunk_size=4, progress=False)
    assert "is invalid" in caplog.text and shard.name in caplog.text
    assert shard.with_name(shard.name + ".invalid").exists()  # kept for inspection, not deleted
    assert rep["n_new"] == 4 * len(RULES)  # the damaged chunk's 4 responses were rated again
    np.testing.assert_array_equal(again.values, first.values)


def test_embeddings_that_are_truncated_mislabelled_zero_or_pickled_are_recomputed(tmp_path, caplog):
    pairs = load_demo("train").iloc[:6]
    enc = Encoder("tiny-bert", tokenizer="embedded:all-MiniLM-L6-v2", device="cpu", dtype="float32",
                  config={"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                          "intermediate_size": 64, "max_position_embeddings": 256})
    good, hit = embed_pairs(pairs, enc, tmp_path, progress=False)
    path = next((tmp_path / "embeddings").glob("*.npz"))
    damages = {
        "truncated": lambda: path.write_bytes(path.read_bytes()[:200]),
        "another entry's": lambda: write_arrays(path, emb=good, _cache_key=np.array("somethingelse")),
        "all-zero": lambda: write_arrays(path, emb=np.zeros_like(good), _cache_key=np.array(path.stem)),
        "wrong shape": lambda: write_arrays(path, emb=good[:3], _cache_key=np.array(path.stem)),
        "pickled": lambda: _pickled(path, emb=np.array([{"x": 1}], dtype=object), _cache_key=np.array(path.stem)),
    }
    for name, damage in damages.items():
        damage()
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            emb, hit = embed_pairs(pairs, enc, tmp_path, progress=False)
        assert not hit and "recomputing" in caplog.text, name
        np.testing.assert_array_equal(emb, good)
    assert embed_pairs(pairs, enc, tmp_path, progress=False)[1]  # and the rewritten entry is used again


def test_a_computation_that_fails_its_own_check_is_not_cached(tmp_path):
    with pytest.raises(RuntimeError, match="fail their check"):
        cached_arrays(tmp_path / "x.npz", lambda: {"a": np.full(3, np.nan)}, lambda a: expect(a, a=(3,)))
    assert not (tmp_path / "x.npz").exists()


def test_judge_cache_key_covers_the_judge_prompt(tmp_path, monkeypatch):
    from encore import prompts as P

    class Counting:
        calls = 0

        def identity(self):
            return {"kind": "counting"}

        def judge(self, prompts, a, b):
            Counting.calls += 1
            return np.full(len(a), 0.6), [""] * len(a)

    pairs = load_demo("eval").iloc[:5]
    ctx = FitContext([], None, None, None, eval_pairs=pairs, rater=Counting())
    LLMJudge(cache_dir=str(tmp_path)).rewards(ctx)
    LLMJudge(cache_dir=str(tmp_path)).rewards(ctx)
    assert Counting.calls == 2  # both orders once; the second run hit the cache
    monkeypatch.setattr(P, "JUDGE_TEMPLATE", P.JUDGE_TEMPLATE.replace("safer", "more helpful"))
    LLMJudge(cache_dir=str(tmp_path)).rewards(ctx)
    assert Counting.calls == 4  # an edited judge prompt is a new judgement


def test_cache_files_respect_the_umask(tmp_path):
    import encore.cache.artifacts as art

    old = os.umask(0o022)
    try:
        monkey_mode = art._file_mode()
    finally:
        os.umask(old)
    assert monkey_mode == 0o644
    art.FILE_MODE, saved = monkey_mode, art.FILE_MODE
    try:
        p = art.write_bytes(tmp_path / "f.bin", b"x")
    finally:
        art.FILE_MODE = saved
    assert p.stat().st_mode & 0o777 == 0o644  # group and others can read a team's shared cache


def test_missing_reasons_are_counted_by_kind_not_by_prompt_length():
    from encore.rating.engine import Ratings

    reasons = np.array([["prompt longer than rater.max_length (5000 > 4096 tokens)"],
                        ["prompt longer than rater.max_length (7311 > 4096 tokens)"], ["HTTP 400: bad"]], dtype=object)
    r = Ratings(["a"], ["k"], np.full((1, 3, 1), np.nan), reasons.reshape(1, 3, 1))
    assert r.missing_by_reason() == {"prompt longer than rater.max_length": 2, "HTTP 400: bad": 1}


def test_warnings_print_plain_numbers(tmp_path, caplog):
    import pandas as pd

    from encore.data.pairs import load_pairs

    path = tmp_path / "p.jsonl"
    pd.DataFrame({"prompt": ["a", "b"], "chosen": ["x", " "], "rejected": ["y", "z"]}).to_json(path, orient="records",
                                                                                              lines=True)
    with caplog.at_level(logging.WARNING):
        load_pairs(path=str(path), empty="drop")
    assert "first rows: [1]" in caplog.text and "np.int64" not in caplog.text
