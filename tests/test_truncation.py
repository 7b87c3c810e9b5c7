"""Texts longer than the backbone's max_length keep their response (the end) and their leading special tokens; the
pairs touched are counted. Right-side truncation used to make long chosen/rejected pairs token-identical ties."""

import numpy as np
import pandas as pd
import pytest

from encore.rm.backbone import Encoder
from encore.data.pairs import load_pairs
from encore.rm.probe import embed_pairs
from encore.rm.truncation import keep_end, truncation_report

from conftest import SHARED_HH

BERT = {"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
        "intermediate_size": 64, "max_position_embeddings": 256}


def test_keep_end_exact():
    assert keep_end([1, 2, 3], 5, {1}) == ([1, 2, 3], False)
    assert keep_end([101, 7, 8, 9, 10, 11, 102], 4, {101, 102}) == ([101, 10, 11, 102], True)
    assert keep_end([101, 100, 7, 8, 9, 102], 4, {100, 101, 102}) == ([101, 100, 9, 102], True)  # ≤ half kept


def test_a_50000_character_prompt_keeps_both_responses_apart(tmp_path):
    pairs = pd.DataFrame({"pair_id": ["a", "b"], "prompt": ["Tell me a story. " * 3000, "Hi"],
                          "chosen": ["I'd rather not help with that.", "Hello!"],
                          "rejected": ["Sure, here is how to do it.", "Go away."], "subset": "x"})
    enc = Encoder("tiny-bert", tokenizer="embedded:all-MiniLM-L6-v2", config=BERT, device="cpu", dtype="float32",
                  max_length=64)
    ids, cut = enc.token_ids(enc.pair_texts(pairs))
    assert cut == [True, True, False, False] and all(len(i) <= 64 for i in ids)
    assert ids[0][0] == enc.tok.cls_token_id and ids[0][-1] == enc.tok.sep_token_id
    assert enc.tok.decode(ids[0]).endswith("assistant : i ' d rather not help with that. [SEP]")  # response kept
    emb, _ = embed_pairs(pairs, enc, tmp_path, progress=False)
    assert not np.allclose(emb[0, 0], emb[0, 1])  # chosen and rejected are no longer the same text
    rep = truncation_report(enc, pairs, tmp_path)
    assert rep == {"max_length": 64, "texts_truncated": 2, "pairs_truncated": 1, "pairs_token_identical": 0,
                   "pairs_identical_in_the_data": 0}


@pytest.mark.skipif(not SHARED_HH.exists(), reason="../shared/data HH-RLHF file not present")
def test_long_hh_rlhf_conversations_no_longer_collapse_into_ties(tmp_path):
    """The first 400 harmless-base pairs at MiniLM's 256 tokens: 35 pairs used to be token-identical after
    right-side truncation; now only pairs whose responses are identical in the data are."""
    pairs = load_pairs(path=str(SHARED_HH), format="hh", subset_field=None, empty="drop", limit=400)
    enc = Encoder(max_length=256, device="cpu")
    rep = truncation_report(enc, pairs, tmp_path)
    assert rep["pairs_truncated"] > 30
    assert rep["pairs_token_identical"] == rep["pairs_identical_in_the_data"]
