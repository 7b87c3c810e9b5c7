import gzip
import json

import pandas as pd
import pytest

from encore.data import demo, labelled, rewardbench
from encore.data import pairs as data
from encore.data.pairs import DataError

from conftest import SHARED_HH


def test_demo_sets_shipped_and_laid_out_like_rewardbench():
    train, ev = demo.load_demo("train"), demo.load_demo("eval")
    assert 100 <= len(train) <= 150 and train["subset"].nunique() == 10
    assert set(ev["subset"]) == set(rewardbench.SAFETY_COUNTS)
    assert ev.groupby("subset").size().min() >= 24
    assert train["pair_id"].is_unique and ev["pair_id"].is_unique
    assert list(train.columns) == data.COLUMNS


def test_pair_ids_are_stable_and_content_based():
    a = demo.load_demo("train")
    b = demo.load_demo("train")
    assert a["pair_id"].tolist() == b["pair_id"].tolist()
    assert data.fingerprint(a) == data.fingerprint(b)
    assert data.fingerprint(a) != data.fingerprint(a.iloc[:-1])


def test_hh_transcript_split_and_messages():
    t = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how do I X?\n\nAssistant: Like this."
    prompt, resp = data.split_hh_transcript(t)
    assert resp == "Like this." and prompt.endswith("how do I X?")
    msgs = data.to_messages(prompt)
    assert [m["role"] for m in msgs] == ["user", "assistant", "user"]
    assert data.to_messages("plain question") == [{"role": "user", "content": "plain question"}]


def _write(path, rows):
    if path.suffix == ".gz":
        with gzip.open(path, "wt") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    elif path.suffix == ".csv":
        pd.DataFrame(rows).to_csv(path, index=False)
    elif path.suffix == ".parquet":
        pd.DataFrame(rows).to_parquet(path)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("name", ["p.jsonl", "p.csv", "p.parquet", "p.jsonl.gz"])
def test_local_formats(tmp_path, name):
    rows = [{"q": f"question {i}", "good": f"good {i}", "bad": f"bad {i}"} for i in range(5)]
    pairs = data.load_pairs(path=str(_write(tmp_path / name, rows)), prompt_field="q", chosen_field="good",
                            rejected_field="bad")
    assert len(pairs) == 5 and pairs.loc[2, "chosen"] == "good 2"


def test_missing_column_names_field_and_fix(tmp_path):
    p = _write(tmp_path / "p.jsonl", [{"prompt": "a", "chosen": "b"}])
    with pytest.raises(DataError, match=r"missing column 'rejected'.*data.rejected_field"):
        data.load_pairs(path=str(p))


def test_empty_response_errors_or_drops(tmp_path):
    p = _write(tmp_path / "p.jsonl", [{"prompt": "a", "chosen": "b", "rejected": " "},
                                      {"prompt": "c", "chosen": "d", "rejected": "e"}])
    with pytest.raises(DataError, match="empty.*data.empty=drop"):
        data.load_pairs(path=str(p))
    assert len(data.load_pairs(path=str(p), empty="drop")) == 1


def test_hh_format_from_local_file(tmp_path):
    rows = [{"chosen": "\n\nHuman: q1\n\nAssistant: safe", "rejected": "\n\nHuman: q1\n\nAssistant: unsafe"}]
    pairs = data.load_pairs(path=str(_write(tmp_path / "hh.jsonl", rows)), format="hh", subset_field=None)
    assert pairs.loc[0, ["prompt", "chosen", "rejected"]].tolist() == ["Human: q1", "safe", "unsafe"]


def test_pku_orders_by_safer_response(tmp_path):
    rows = [{"prompt": "p", "response_0": "r0", "response_1": "r1", "safer_response_id": 1, "better_response_id": 0}]
    p = _write(tmp_path / "pku.jsonl", rows)
    safer = labelled.load_pku_saferlhf(path=str(p))
    assert (safer.loc[0, "chosen"], safer.loc[0, "rejected"]) == ("r1", "r0")
    assert labelled.load_pku_saferlhf(path=str(p), preference="better").loc[0, "chosen"] == "r0"


def test_reward_bench_subsets(tmp_path):
    rows = [{"prompt": f"p{i}", "chosen": "c", "rejected": "r", "subset": s}
            for i, s in enumerate(["donotanswer", "donotanswer", "math-prm", "refusals-dangerous"])]
    p = _write(tmp_path / "rb.jsonl", rows)
    assert set(rewardbench.load_reward_bench(path=str(p), subsets=["donotanswer"])["subset"]) == {"donotanswer"}
    with pytest.raises(DataError, match="RewardBench does not have"):
        rewardbench.load_reward_bench(path=str(p), subsets=["refusals-violent"])
    with pytest.raises(DataError, match="does not have"):  # a real RewardBench subset absent from the file
        rewardbench.load_reward_bench(path=str(p), subsets=["xstest-should-refuse"])


def test_unknown_format_and_missing_path(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        data.load_pairs(path=str(tmp_path / "nope.jsonl"))
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(DataError, match="unknown format"):
        data.load_pairs(path=str(tmp_path / "x.txt"))


@pytest.mark.skipif(not SHARED_HH.exists(), reason="../shared/data HH-RLHF file not present")
def test_real_hh_rlhf_file_loads():
    pairs = data.load_pairs(path=str(SHARED_HH), format="hh", subset_field=None, empty="drop")
    assert len(pairs) == 2308  # 2,312 pairs, 4 with an empty final turn dropped
    assert pairs["prompt"].str.startswith("Human:").all()


@pytest.mark.parametrize("limit", [0, -1, 2.5, "abc"])
def test_limit_zero_negative_or_not_a_count_is_an_error(tmp_path, limit):
    path = tmp_path / "p.jsonl"
    pd.DataFrame({"prompt": ["a", "b", "c"], "chosen": ["x", "y", "z"], "rejected": ["u", "v", "w"]}).to_json(
        path, orient="records", lines=True)
    with pytest.raises(DataError, match="data.limit"):
        data.load_pairs(path=str(path), limit=limit)
    with pytest.raises(DataError, match="data.limit"):
        demo.load_demo("train", limit=limit)
    assert len(data.load_pairs(path=str(path), limit=2)) == 2


def test_duplicates_and_identical_pairs_are_counted_and_warned(tmp_path, caplog):
    rows = [{"prompt": "p", "chosen": "good", "rejected": "bad"}] * 3 + [{"prompt": "q", "chosen": "same", "rejected": "same"}]
    path = tmp_path / "p.jsonl"
    pd.DataFrame(rows).to_json(path, orient="records", lines=True)
    with caplog.at_level("WARNING"):
        pairs = data.load_pairs(path=str(path))
    assert len(pairs) == 4 and pairs["pair_id"].is_unique
    text = caplog.text
    assert "2 duplicate pair(s)" in text and "1 pair(s) with chosen identical to rejected" in text


def test_unreadable_files_name_the_file_and_the_fix(tmp_path):
    good = b'{"prompt": "p", "chosen": "c", "rejected": "r"}\n'
    cases = {
        "empty.jsonl": (b"", "empty file"),
        "latin1.jsonl": ('{"prompt": "caf\u00e9", "chosen": "c", "rejected": "r"}\n'.encode("latin-1"), "not UTF-8"),
        "zipped.jsonl": (gzip.compress(good), "rename it to zipped.jsonl.gz"),
        "plain.jsonl.gz": (good, "not gzip-compressed but named .gz"),
        "broken.jsonl": (b'{"prompt": "p", "chos', "cannot be read as jsonl"),
        "nothing.jsonl.gz": (gzip.compress(b"\n"), "holds no rows"),
    }
    for name, (content, message) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(DataError, match=message) as e:
            data.load_pairs(path=str(tmp_path / name))
        assert name in str(e.value) and "prompt_field" not in str(e.value)
