"""Results you can trust: caches that catch an edit, a bad shard moved aside safely by racing processes, run
directories that two runs never share, no API key in any stored or logged text, texts matched after Unicode
normalisation, another rater's ratings named instead of re-rated, and no litter in the system temp dir."""

import logging
import os
import tempfile

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from encore.cache.artifacts import arrays_checksum, cached_arrays, write_arrays
from encore.data.demo import load_demo
from encore.rating.engine import OtherRatings, rate_pairs
from encore.rating import store as store_mod
from encore.rules import Rule

from conftest import FakeRater

RULES = [Rule("a", "rule a"), Rule("b", "rule b")]


def _shards(root):
    return sorted(root.rglob("shard-*.parquet"))


# ----------------------------------------------------------------------------------------- checksums
def test_an_array_entry_edited_after_it_was_cached_is_recomputed(tmp_path, caplog):
    path = tmp_path / "k.npz"
    good, _ = cached_arrays(path, lambda: {"s": np.array([[0.2, 0.8], [0.6, 0.1]])})
    arrays = dict(np.load(path))
    write_arrays(path, **{**arrays, "s": arrays["s"][:, ::-1].copy()})  # chosen and rejected swapped, key kept
    with caplog.at_level(logging.WARNING):
        again, hit = cached_arrays(path, lambda: {"s": np.array([[0.2, 0.8], [0.6, 0.1]])})
    assert not hit and "do not match the checksum" in caplog.text
    np.testing.assert_array_equal(again["s"], good["s"])
    write_arrays(path, s=good["s"][:, ::-1].copy(), _cache_key=np.array("k"))  # rewritten without a checksum
    assert not cached_arrays(path, lambda: good)[1]
    assert cached_arrays(path, lambda: good)[1]


@pytest.mark.parametrize("keep_metadata", [True, False])
def test_ratings_replaced_by_one_minus_v_are_caught_and_rated_again(tmp_path, caplog, keep_metadata):
    pairs = load_demo("train").iloc[:6]
    first, _ = rate_pairs(pairs, RULES, FakeRater(), tmp_path, chunk_size=4, progress=False)
    shard = _shards(tmp_path)[0]
    table = pq.read_table(shard)
    df = table.to_pandas()
    df["value"] = 1 - df["value"]
    if keep_metadata:  # edited with pyarrow, the old checksum carried along
        import pyarrow as pa

        pq.write_table(pa.Table.from_pandas(df, preserve_index=False).replace_schema_metadata(table.schema.metadata),
                       shard)
    else:  # edited with pandas: the checksum is gone
        df.to_parquet(shard)
    with caplog.at_level(logging.WARNING):
        again, rep = rate_pairs(pairs, RULES, FakeRater(), tmp_path, chunk_size=4, progress=False)
    assert "is invalid" in caplog.text and rep["n_new"] > 0
    np.testing.assert_array_equal(again.values, first.values)


def test_shards_from_before_checksums_are_used_once_stamped_then_enforced(tmp_path, caplog):
    pairs = load_demo("train").iloc[:4]
    first, _ = rate_pairs(pairs, RULES, FakeRater(), tmp_path, chunk_size=4, progress=False)
    store_dir = _shards(tmp_path)[0].parent
    for shard in _shards(tmp_path):  # as an older version wrote them: no checksum, no marker
        pd.read_parquet(shard).to_parquet(shard)
    (store_dir / store_mod.MARKER).unlink()
    with caplog.at_level(logging.WARNING):
        again, rep = rate_pairs(pairs, RULES, FakeRater(), tmp_path, chunk_size=4, progress=False)
    assert rep["n_new"] == 0 and "now carry one" in caplog.text
    assert all(store_mod.CHECKSUM in pq.read_schema(s).metadata for s in _shards(tmp_path))
    np.testing.assert_array_equal(again.values, first.values)


# ----------------------------------------------------------------------------------------- shard race
def test_two_processes_moving_one_bad_shard_aside_do_not_crash(tmp_path, monkeypatch):
    """Both find the shard corrupt; the other process renames it first. Before: FileNotFoundError."""
    pairs = load_demo("train").iloc[:4]
    rate_pairs(pairs, RULES, FakeRater(), tmp_path, chunk_size=4, progress=False)
    shard = _shards(tmp_path)[0]
    shard.write_bytes(b"not parquet")
    real = store_mod._read_shard

    def other_process_wins(path):
        out = real(path)
        path.rename(path.with_name(path.name + ".invalid"))  # the racing process's rename lands first
        return out

    monkeypatch.setattr(store_mod, "_read_shard", other_process_wins)
    table = store_mod.RatingStore(tmp_path, shard.parent.name).load()
    assert len(table) == 4 * len(RULES) and shard.with_name(shard.name + ".invalid").exists()  # the other shard


# ----------------------------------------------------------------------------------------- run directories
def test_two_runs_started_in_the_same_second_get_two_directories(monkeypatch):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from conftest import CONF

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        a = compose(config_name="config", return_hydra_config=True)
        b = compose(config_name="config", return_hydra_config=True)
    OmegaConf.register_new_resolver("now", lambda pattern: "2026-01-01_00-00-00", replace=True, use_cache=True)
    try:
        assert a.hydra.run.dir != b.hydra.run.dir
        assert a.hydra.run.dir == a.hydra.run.dir  # one run reads one directory every time
        assert a.hydra.sweep.dir != b.hydra.sweep.dir
    finally:
        from datetime import datetime

        OmegaConf.register_new_resolver("now", lambda pattern: datetime.now().strftime(pattern), replace=True,
                                        use_cache=True)


def test_the_ranks_of_one_launch_share_a_directory_and_two_launches_do_not():
    from encore.run.run_dirs import run_token

    rank = {"WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500",
            "TORCHELASTIC_RUN_ID": "none"}
    assert run_token({**rank, "RANK": "0"}) == run_token({**rank, "RANK": "1"})
    assert run_token(rank) != run_token({**rank, "MASTER_PORT": "29501"})
    assert run_token({}) != run_token({})  # two single processes


# ----------------------------------------------------------------------------------------- API key
def test_a_server_that_echoes_the_key_leaves_it_nowhere(tmp_path, monkeypatch, caplog):
    from encore.rating.hf import HFRater
    from encore.rating.remote import OpenAIRater
    from encore.rm.tiny import tiny_causal_config

    from llm_server import LLMServer

    monkeypatch.setenv("ENCORE_TEST_KEY", "sk-echoed-secret-987")
    local = HFRater(model="tiny", tokenizer="tiny-bpe", config=tiny_causal_config("llama", hidden=32, layers=1),
                    device="cpu", dtype="float32")
    pairs = load_demo("train").iloc[:2]
    with LLMServer(local, faults=["echo"] * 4) as srv, caplog.at_level(logging.INFO):
        rater = OpenAIRater(model="tiny", base_url=srv.url, api_key_env="ENCORE_TEST_KEY", top_logprobs=1000,
                            max_concurrency=1)
        ratings, rep = rate_pairs(pairs, RULES, rater, tmp_path, progress=False, max_missing_share=1.0)
    assert srv.seen_auth == {"Bearer sk-echoed-secret-987"}  # the key was sent, and echoed back in 4 bodies
    assert "HTTP 400" in str(rep["missing_by_reason"])
    stored = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    assert b"sk-echoed" not in stored and "sk-echoed" not in caplog.text
    assert "sk-echoed" not in str(ratings.tidy().to_dict()) and "sk-echoed" not in str(rep)


# ----------------------------------------------------------------------------------------- text matching
def test_a_ratings_file_in_nfd_with_stray_spaces_matches_the_data(tmp_path):
    import unicodedata

    from encore.rating.file import FileRater

    pairs = load_demo("train").iloc[:4].copy()
    pairs.loc[0, "chosen"] = "Café au lait, s'il vous plaît."
    rows = [{"prompt": unicodedata.normalize("NFD", p) + "\n", "response": " " + unicodedata.normalize("NFD", x),
             "rule": r.name, "value": 0.5} for p, c, j in zip(pairs["prompt"], pairs["chosen"], pairs["rejected"])
            for x in (c, j) for r in RULES]
    path = tmp_path / "r.jsonl"
    pd.DataFrame(rows).to_json(path, orient="records", lines=True, force_ascii=False)
    ratings, rep = FileRater(str(path)).given(pairs, RULES)
    assert ratings.n_missing == 0 and rep["pairs_without_ratings"] == 0


def test_many_unmatched_texts_name_the_likely_cause(tmp_path, caplog):
    from encore.rating.file import FileRater

    pairs = load_demo("train").iloc[:4]
    rows = [{"prompt": p if i else p.upper(), "response": x if i else "  ".join(x.split()), "rule": r.name, "value": 0.5}
            for i, (p, c, j) in enumerate(zip(pairs["prompt"], pairs["chosen"], pairs["rejected"]))
            for x in (c, j) for r in RULES]
    path = tmp_path / "r.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    with caplog.at_level(logging.WARNING):
        FileRater(str(path)).given(pairs, RULES)
    assert "match when inner whitespace and case are ignored" in caplog.text


# ----------------------------------------------------------------------------------------- other raters
class OtherFake(FakeRater):
    def identity(self):
        return {"kind": "other", "model": "big-70b"}


def test_a_run_never_re_rates_silently_what_another_rater_rated(tmp_path):
    pairs = load_demo("train").iloc[:6]
    _, first = rate_pairs(pairs, RULES, OtherFake(), tmp_path, progress=False,
                          overrides=["rater=vllm_server", "rater.model=big-70b"])
    with pytest.raises(OtherRatings, match=r"run with: rater=vllm_server rater.model=big-70b\. .*"
                                           r"rating.other_raters=rate"):
        rate_pairs(pairs, RULES, FakeRater(), tmp_path, progress=False, other_raters="stop")
    assert not (tmp_path / "ratings").exists() and len(list(tmp_path.iterdir())) == 1  # nothing rated
    _, rep = rate_pairs(pairs, RULES, FakeRater(), tmp_path, progress=False, other_raters="rate")
    assert rep["n_new"] == first["n_new"]


def test_ratings_made_in_bf16_before_dtype_auto_was_machine_free_are_named(tmp_path):
    """A store an older version keyed by the dtype a GPU chose for dtype=auto: rater.dtype=bfloat16 uses it."""
    from encore.cache.artifacts import content_hash
    from encore.rating.hf import HFRater

    class HF(HFRater):
        def rate(self, prompts, responses, rules):
            return FakeRater().rate(prompts, responses, rules)

    pairs = load_demo("train").iloc[:4]
    old = HF(model="m", tokenizer="tiny-bpe", dtype="bfloat16")
    rate_pairs(pairs, RULES, old, tmp_path, progress=False)
    (next(tmp_path.iterdir()) / "identity.json").unlink()  # as an older version left it: no identity record
    assert content_hash(old.identity()) == next(tmp_path.iterdir()).name
    with pytest.raises(OtherRatings, match=r"run with: rater.dtype=bfloat16"):
        rate_pairs(pairs, RULES, HF(model="m", tokenizer="tiny-bpe"), tmp_path, progress=False, other_raters="stop")


# ----------------------------------------------------------------------------------------- litter
def test_tiny_tokenizers_leave_nothing_in_the_system_temp_dir(tmp_path, monkeypatch):
    import subprocess
    import sys

    tmp = tmp_path / "systmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp), "ENCORE_CACHE_DIR": str(tmp_path / "cache")}
    code = "from encore.rm.tiny import tokenizer_dir; print(tokenizer_dir('tiny-wordpiece'))"
    out = [subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
           for _ in range(2)]
    assert out[0] == out[1] and str(tmp_path / "cache") in out[0]  # built once, then reused
    assert not [p.name for p in tmp.iterdir() if p.name.startswith("encore-")]


def test_a_disk_offload_folder_goes_with_its_model(tmp_path, monkeypatch):
    import gc

    from encore.scale import loading
    from encore.scale.placement import Placement

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    place = Placement.__new__(Placement)
    monkeypatch.setattr(Placement, "load_kwargs", lambda self: {"device_map": {"": "cpu"}, "max_memory": {"disk": 1}})
    from transformers import AutoModel

    model = loading.load_model(AutoModel, "x", revision=None, config={"model_type": "bert", "hidden_size": 32,
                               "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64},
                               vocab_size=100, seed=0, dtype=__import__("torch").float32, place=place)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("encore-offload-")]
    del model
    gc.collect()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith("encore-offload-")]


# ----------------------------------------------------------------------------------------- a rule with no ratings
def test_a_rule_with_no_ratings_stops_the_run_naming_its_column(tmp_path):
    from encore.errors import DataError
    from encore.rating.columns import ColumnRater
    from encore.rating.given import given_ratings

    pairs = load_demo("train").iloc[:5].copy()
    for side in ("chosen", "rejected"):
        pairs[f"{side}:harm_a"] = [True, False, False, True, False]
        pairs[f"{side}:harm_b"] = None  # the release renamed this category: the label is absent on every pair
    rater = ColumnRater("pku", {"a": {"column": "harm_a", "scale": [0, 1], "invert": True},
                                "b": {"column": "harm_b", "scale": [0, 1], "invert": True}})
    with pytest.raises(DataError, match=r"rule\(s\) b \(column 'harm_b'\) have no rating on any of the 5 pairs"):
        given_ratings(rater, pairs, RULES, max_missing_share=1.0)


def test_a_rule_an_llm_rater_never_rated_stops_before_ratings_are_written(tmp_path, cache):
    from encore.errors import DataError
    from encore.run.pipeline import stage_ratings

    from conftest import make_cfg

    class HalfBlind(FakeRater):
        def rate(self, prompts, responses, rules):
            v, why = super().rate(prompts, responses, rules)
            v[:, 1] = np.nan
            return v, [[w[0], "refused"] for w in why]

    cfg = make_cfg("rating.max_missing_share=1.0", cache=cache)
    with pytest.raises(DataError, match=r"rule\(s\) b have no rating"):
        stage_ratings(cfg, HalfBlind(), load_demo("train").iloc[:4], RULES, tmp_path / "run")
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------------------- files that name themselves
def test_a_jsonl_with_a_bom_a_parquet_directory_and_a_symlink_loop_are_read_or_named(tmp_path):
    from encore.errors import DataError
    from encore.data.sources import read_table

    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + b'{"prompt": "p", "chosen": "a", "rejected": "b"}\n')
    assert read_table(bom).columns.tolist() == ["prompt", "chosen", "rejected"]
    part = tmp_path / "ratings.parquet"
    part.mkdir()
    pd.DataFrame({"x": [1, 2]}).to_parquet(part / "part-0.parquet")
    assert read_table(part, "rater.path")["x"].tolist() == [1, 2]
    loop = tmp_path / "loop.jsonl"
    loop.symlink_to(loop)
    with pytest.raises(DataError, match="loops back on itself"):
        read_table(loop, "rater.path")
