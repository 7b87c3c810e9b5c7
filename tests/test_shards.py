"""Rating split over jobs: disjoint slices that cover every text, a multirun of shards that assembles into exactly
the table one process rates, and a later stage that names the missing shard and its command."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from encore.data.demo import load_demo
from encore.run.pipeline import run_correlation, run_rate
from encore.rating.engine import MissingShards, Slicing, rate_pairs
from encore.rating.shards import assign, canonical_chunks
from encore.rules import Rule

from conftest import ROOT, FakeRater, make_cfg
from test_pipeline import _env

RULES = [Rule("a", "rule a"), Rule("b", "rule b"), Rule("c", "rule c")]
TINY = ["rater=hf_tiny", "data=demo", "data.limit=30", "rating.chunk_size=8"]


def test_slices_are_disjoint_cover_everything_and_ignore_row_order():
    lengths, hashes = [5, 9, 9, 1, 7, 3, 9], [f"h{i}" for i in range(7)]
    chunks = canonical_chunks(lengths, hashes, 3)
    assert sorted(i for c in chunks for i in c) == list(range(7))
    assert chunks[0] == [1, 2, 6]  # longest first, ties by hash
    perm = [6, 0, 3, 1, 5, 2, 4]  # the same texts in another row order give the same chunks of texts
    again = canonical_chunks([lengths[i] for i in perm], [hashes[i] for i in perm], 3)
    assert [[hashes[perm[i]] for i in c] for c in again] == [[hashes[i] for i in c] for c in chunks]


def test_shards_rate_disjoint_slices_that_assemble_into_the_unsharded_table(tmp_path):
    pairs = load_demo("train").iloc[:20]
    whole, _ = rate_pairs(pairs, RULES, FakeRater(), tmp_path / "one", chunk_size=4, progress=False)
    news = []
    for i in range(3):
        table, rep = rate_pairs(pairs, RULES, FakeRater(), tmp_path / "three", chunk_size=4, progress=False,
                                slicing=Slicing(3, i))
        assert table is None and rep["slice"]["shard"] == i
        news.append(rep["n_new"])
    n_texts = len({(p, x) for p, c, r in zip(pairs["prompt"], pairs["chosen"], pairs["rejected"]) for x in (c, r)})
    assert sum(news) == n_texts * len(RULES) and min(news) > 0  # disjoint slices, each with work, covering all
    assembled, rep = rate_pairs(pairs, RULES, FakeRater(), tmp_path / "three", chunk_size=4, progress=False)
    assert rep["n_new"] == 0 and sum(news) == rep["n_cached"]
    np.testing.assert_array_equal(assembled.values, whole.values)


def test_chunks_go_to_the_least_loaded_shard_longest_first():
    lengths = [100, 90, 50, 40, 30, 5]
    chunks = [[0], [1], [2], [3], [4], [5]]  # already in canonical order
    assert assign(chunks, lengths, 2) == [0, 1, 1, 0, 0, 1]  # loads 170 and 145; round robin: 180 and 135
    assert assign(chunks, lengths, 1) == [0] * 6


@pytest.mark.parametrize("bad", [(3, None), (None, 1), (2, 2), (0, 0), (2, -1)])
def test_shard_settings_are_checked(bad):
    with pytest.raises(ValueError, match="rating.shard"):
        Slicing.from_config(*bad)


def test_stage_with_a_missing_shard_names_it_and_its_command(tmp_path, cache):
    for i in (0, 2):
        m = run_rate(make_cfg(*TINY, "rating.num_shards=3", f"rating.shard={i}", cache=cache), tmp_path / f"s{i}")
        assert (m["rating"]["slice"]["num_shards"], m["rating"]["slice"]["shard"]) == (3, i)
        assert not (tmp_path / f"s{i}" / "ratings.parquet").exists()  # a slice is not a table
    with pytest.raises(MissingShards, match=r"shard\(s\) 1 of 3") as err:
        run_correlation(make_cfg(*TINY, cache=cache), tmp_path / "study")
    assert "rating.num_shards=3 rating.shard=1" in str(err.value)
    run_rate(make_cfg(*TINY, "rating.num_shards=3", "rating.shard=1", cache=cache), tmp_path / "s1")
    m = run_correlation(make_cfg(*TINY, cache=cache), tmp_path / "study")
    assert m["rating"]["n_new"] == 0 and m["rating"]["n_missing"] == 0


@pytest.mark.slow
def test_three_shards_as_a_joblib_multirun_equal_one_unsharded_run(tmp_path):
    """Real processes: the shard jobs run in parallel through the joblib launcher into one shared cache; the
    assembled ratings equal, bit for bit, those of one unsharded process with its own cache."""
    common = [*TINY, "logger=none", "stats.n_boot=39"]

    def run(args, cache):
        env = _env(cache) | {"ENCORE_RUNS_DIR": str(tmp_path / "runs")}
        out = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr[-3000:]
        return out.stdout + out.stderr

    log = run(["experiments/rate.py", "-m", *common, "rating.num_shards=3", "rating.shard=range(0,3)",
               "hydra/launcher=local"], tmp_path / "shared")
    assert "Joblib.Parallel(n_jobs=2" in log
    run(["experiments/correlation.py", *common, "hydra.run.dir=" + str(tmp_path / "assembled")], tmp_path / "shared")
    run(["experiments/correlation.py", *common, "hydra.run.dir=" + str(tmp_path / "single")], tmp_path / "alone")
    a = pd.read_parquet(tmp_path / "assembled" / "ratings.parquet")
    b = pd.read_parquet(tmp_path / "single" / "ratings.parquet")
    assert len(a) == 30 * 2 * 10 and a["value"].notna().all()
    pd.testing.assert_frame_equal(a, b, check_exact=True)
