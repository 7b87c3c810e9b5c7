"""rater=file: ratings produced elsewhere, matched to the data by content. A run re-run from its own ratings.parquet
gives identical tables; bad files are clear errors or counted warnings, and nothing is written before they stop."""

import logging

import numpy as np
import pandas as pd
import pytest

from conftest import make_cfg
from encore.errors import DataError
from encore.run.pipeline import run_correlation, run_reproduce
from encore.rating.engine import TooManyMissing
from encore.errors import SettingError


@pytest.fixture
def demo_run(demo_runs):
    """The session's demo run (embedded rater, tiny backbone): its ratings.parquet is the file the tests feed back."""
    return demo_runs / "demo" / "full"


def _file_run(tmp_path, path, *over, job=run_reproduce, cache=None):
    cfg = make_cfg("rater=file", f"rater.path={path}", *over, cache=cache or tmp_path / "cache")
    return job(cfg, tmp_path / "run"), tmp_path / "run"


def test_a_run_rerun_from_its_own_ratings_parquet_gives_identical_tables(tmp_path, demo_run):
    m, run = _file_run(tmp_path, demo_run / "ratings.parquet")
    for name in ("rule_stats.csv", "main_table.csv", "weights.csv", "significance.csv"):
        assert (run / name).read_bytes() == (demo_run / name).read_bytes(), name
    assert m["rating"]["source"] == "ratings file ratings.parquet" and m["rating"]["n_new"] == 0
    # the summary says where the 103 x 2 x 10 ratings came from, not "0 from the cache, 0 new"
    assert ("ratings: 2060 read from ratings file ratings.parquet (2060 rows in the file, 0 match no pair, 0 pairs "
            "not in it), 0 missing") in m["summary"].splitlines()
    assert not (tmp_path / "cache" / "ratings").exists()  # no rater ran, nothing went to the rating cache


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_prompt_and_response_texts_in_csv_or_jsonl_match_like_pair_ids(tmp_path, demo_run, fmt):
    tidy = pd.read_parquet(demo_run / "ratings.parquet")
    pairs = make_cfg(cache=tmp_path)  # the demo's training pairs, to spell the file with texts
    from hydra.utils import instantiate

    data = instantiate(pairs.data).set_index("pair_id")
    texts = tidy.assign(prompt=data.loc[tidy["pair_id"], "prompt"].to_numpy(),
                        response=[data.loc[p, s] for p, s in zip(tidy["pair_id"], tidy["side"])])
    texts = texts[["prompt", "response", "rule", "value"]].drop_duplicates(["prompt", "response", "rule"])
    path = tmp_path / f"ratings.{fmt}"
    texts.sample(frac=1, random_state=0).to_csv(path, index=False) if fmt == "csv" else texts.sample(
        frac=1, random_state=0).to_json(path, orient="records", lines=True)  # shuffled: order never matters
    _, run = _file_run(tmp_path, path, job=run_correlation)
    pd.testing.assert_frame_equal(pd.read_csv(run / "rule_stats.csv"), pd.read_csv(demo_run / "rule_stats.csv"))


def _write(tmp_path, df, name="r.parquet"):
    df.to_parquet(tmp_path / name) if name.endswith("parquet") else df.to_csv(tmp_path / name, index=False)
    return tmp_path / name


@pytest.mark.parametrize("edit, match", [
    (lambda t: t.assign(value=np.where(t.index == 7, 1.5, t["value"])), r"row 7: value = 1.5 .*not a rating in \[0, 1\]"),
    (lambda t: t.assign(value=t["value"].astype(object).where(t.index != 3, "high")), r"row 3: value = 'high'"),
    (lambda t: t.assign(rule=t["rule"].replace("no_hate", "no_hatred")), r"in the file only \['no_hatred'\], in the rule set only \['no_hate'\]"),
    (lambda t: t[t["rule"] != "no_hate"], r"in the rule set only \['no_hate'\]"),
    (lambda t: pd.concat([t, t.iloc[[5]].assign(value=0.123)]), r"rate the same pair_id/side/rule with different values"),
    (lambda t: t.assign(pair_id=t["pair_id"] + "x"), r"none of its \d+ rating\(s\) match a pair of the data"),
    (lambda t: t.assign(side=t["side"].replace("rejected", "loser")), r"side = 'loser'; use 'chosen' or 'rejected'"),
    (lambda t: t.drop(columns="side"), r"needs rule and value, plus pair_id and side, or prompt and response"),
])
def test_bad_ratings_files_are_clear_errors_and_write_nothing(tmp_path, demo_run, edit, match):
    path = _write(tmp_path, edit(pd.read_parquet(demo_run / "ratings.parquet")), "r.csv")  # CSV holds any value
    with pytest.raises(DataError, match=match):
        _file_run(tmp_path, path)
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


def test_pairs_the_file_lacks_are_counted_missing_under_the_missing_policy(tmp_path, demo_run, caplog):
    tidy = pd.read_parquet(demo_run / "ratings.parquet")
    pairs = tidy["pair_id"].unique()
    few = tidy[~tidy["pair_id"].isin(pairs[:10])]  # 10 of 103 pairs unrated: under the 20% policy
    extra = tidy[tidy["pair_id"] == pairs[-1]].assign(pair_id="not-in-the-data")
    dup = few.iloc[[0, 1]]  # repeated exactly: counted, used once
    with caplog.at_level(logging.WARNING):
        m, run = _file_run(tmp_path, _write(tmp_path, pd.concat([few, extra, dup])), job=run_correlation)
    assert m["rating"]["pairs_without_ratings"] == 10 and m["rating"]["file_ratings_unused"] == 20
    assert m["rating"]["n_missing"] == 10 * 2 * 10  # 10 pairs x 2 sides x 10 rules
    assert m["rating"]["missing_by_reason"] == {"not in ratings file r.parquet": 200}
    assert "2 duplicate row(s) repeat a rating exactly" in caplog.text
    assert pd.read_csv(run / "rule_stats.csv")["n_pairs"].eq(93).all()
    # over the policy's share: the run stops, naming why
    with pytest.raises(TooManyMissing, match="not in ratings file.*complete its labels or file"):
        _file_run(tmp_path / "b", _write(tmp_path, tidy[tidy["pair_id"].isin(pairs[:50])]), job=run_correlation,
                  cache=tmp_path / "cache")


@pytest.mark.parametrize("over, match", [
    (["rating.num_shards=2", "rating.shard=0"], "nothing to rate in shards"),
    (["method=llm_judge"], r"method \['llm_judge'\] judges pairs with the run's LLM rater"),
])
def test_a_ratings_source_refuses_shards_and_an_llm_judge(tmp_path, demo_run, over, match):
    with pytest.raises(SettingError, match=match):
        _file_run(tmp_path, demo_run / "ratings.parquet", *over)
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())
