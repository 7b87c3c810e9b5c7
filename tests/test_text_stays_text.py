"""Texts stay texts (issue 33): every text field of pairs, ratings files and evaluation sets is read as the string
its file holds, from JSONL, CSV and parquet: "1.50" is never 1.5 and "3" never 3.0. A ratings file keyed by prompt
and response texts that look like numbers still merges; a rating that is not a number in [0, 1] (JSON true or false
included) is refused with its row."""

import json
import re

import pandas as pd
import pytest

from encore.data.labelled import load_pku_saferlhf
from encore.data.pairs import load_pairs
from encore.data.rewardbench import load_reward_bench
from encore.errors import DataError
from encore.rating.file import FileRater
from encore.rules import Rule

ROWS = [{"prompt": "How much is it?", "chosen": "1.50", "rejected": "3", "subset": "007"},
        {"prompt": "42", "chosen": "1e3", "rejected": "0012", "subset": "xstest-should-refuse"},
        {"prompt": "Is it true?", "chosen": "true", "rejected": "NaN", "subset": "2"}]
RULES = [Rule("1", "rule one"), Rule("2.50", "rule two")]  # rule names that look like numbers


def _write(df: pd.DataFrame, path):
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in df.to_dict("records")))
    elif path.suffix == ".csv":
        df.to_csv(path, index=False)
    else:
        df.astype(str).to_parquet(path)
    return path


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_pair_texts_that_look_like_numbers_stay_as_written(tmp_path, fmt):
    pairs = load_pairs(path=str(_write(pd.DataFrame(ROWS), tmp_path / f"p.{fmt}")))
    assert pairs[["prompt", "chosen", "rejected", "subset"]].to_dict("records") == ROWS


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_evaluation_sets_and_labelled_sets_keep_their_texts(tmp_path, fmt):
    ev = load_reward_bench(path=str(_write(pd.DataFrame(ROWS).assign(subset="xstest-should-refuse"),
                                           tmp_path / f"e.{fmt}")), subsets=["xstest-should-refuse"])
    assert list(ev["chosen"]) == ["1.50", "1e3", "true"] and list(ev["rejected"]) == ["3", "0012", "NaN"]
    pku = pd.DataFrame({"prompt": ["1.0"], "response_0": ["2.50"], "response_1": ["07"], "safer_response_id": [1]})
    got = load_pku_saferlhf(path=str(_write(pku, tmp_path / f"k.{fmt}")))
    assert (got.loc[0, "prompt"], got.loc[0, "chosen"], got.loc[0, "rejected"]) == ("1.0", "07", "2.50")


def _ratings(pairs: pd.DataFrame, value=0.25) -> pd.DataFrame:
    return pd.DataFrame([{"prompt": p, "response": x, "rule": r.name, "value": value}
                         for p, c, j in zip(pairs["prompt"], pairs["chosen"], pairs["rejected"])
                         for x in (c, j) for r in RULES])


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_a_ratings_file_keyed_by_number_like_texts_merges(tmp_path, fmt):
    pairs = load_pairs(path=str(_write(pd.DataFrame(ROWS), tmp_path / "p.jsonl")))
    table = _ratings(pairs)
    if fmt == "parquet":
        table.to_parquet(tmp_path / "r.parquet")
        path = tmp_path / "r.parquet"
    else:
        path = _write(table, tmp_path / f"r.{fmt}")
    ratings, rep = FileRater(str(path)).given(pairs, RULES)
    assert ratings.n_missing == 0 and rep["pairs_without_ratings"] == 0 and (ratings.values == 0.25).all()


@pytest.mark.parametrize("bad", [True, False, "yes", 1.5, -0.1])
def test_a_rating_that_is_not_a_number_in_0_1_is_refused_with_its_row(tmp_path, bad):
    pairs = load_pairs(path=str(_write(pd.DataFrame(ROWS), tmp_path / "p.jsonl")))
    table = _ratings(pairs).astype({"value": object})
    table.loc[4, "value"] = bad
    path = _write(table, tmp_path / "r.jsonl")  # JSON keeps true/false as booleans
    with pytest.raises(DataError, match=rf"row 4: value = {re.escape(repr(bad))} .*not a rating in \[0, 1\]"):
        FileRater(str(path)).given(pairs, RULES)
