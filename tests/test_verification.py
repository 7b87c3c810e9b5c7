"""Verification within the collective timeout (issues 32 and 33): the ranks of a launch hash a checkpoint's or a
cached model's files between them (each about 1/world of the bytes) and gather the digests in a gloo group whose
timeout follows the expected hashing time, instead of rank 0 hashing ~90 GB while the others wait in a collective
with a 10-minute timeout. :func:`encore.cache.integrity.verify_seconds` gives that time for a plan."""

import json
import os
import re
import subprocess
import sys

import pytest

from encore.cache.integrity import hash_rate, share, verify_seconds
from encore.scale.distributed import COLLECTIVE_TIMEOUT_S

from conftest import ROOT

GB = 10 ** 9


def test_each_rank_gets_about_its_share_of_the_bytes():
    files = {f: {"bytes": b} for f, b in (("opt.bin", 8), ("model.safetensors", 4), ("a", 2), ("b", 1), ("c", 1))}
    shares = [share(files, r, 2) for r in range(2)]
    assert shares == [["opt.bin"], ["model.safetensors", "a", "b", "c"]]  # 8 bytes each
    assert sorted(sum(shares, [])) == sorted(files)  # every file once
    assert [share(files, r, 3) for r in range(3)] == [["opt.bin"], ["model.safetensors"], ["a", "b", "c"]]


def test_verify_seconds_from_sizes_ranks_and_the_hash_rate():
    assert verify_seconds(90 * GB, ranks=8, rate=1 * GB) == pytest.approx(11.25)  # a plan's total: 90 GB over 8
    assert verify_seconds(90 * GB, ranks=1, rate=1 * GB) == pytest.approx(90.0)
    # one 64 GB optimizer.bin is hashed by one thread of one rank, whatever the world size
    assert verify_seconds([64 * GB, 16 * GB, 1 * GB], ranks=8, rate=1 * GB) == pytest.approx(64.0)
    # many shards: 8 ranks x 8 threads
    assert verify_seconds([GB] * 64, ranks=8, rate=1 * GB, threads=8) == pytest.approx(1.0)
    assert verify_seconds([GB] * 64, ranks=1, rate=1 * GB, threads=8) == pytest.approx(8.0)
    assert hash_rate() > 1e6  # measured here: bytes/s of SHA-256 on one thread


@pytest.mark.slow  # two gloo processes started by torchrun (~30 s on 2 busy cores)
def test_two_gloo_ranks_hash_their_shares_and_both_see_a_flip_in_the_others_share(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", ACCELERATE_USE_CPU="true", ACCELERATE_MIXED_PRECISION="no")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29527",
           str(ROOT / "tests" / "workers" / "shared_verify.py"), str(tmp_path / "model")]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    # the two ranks print at once: their lines can run together ("}{"), so read each flat object on its own
    ranks = sorted((json.loads(x) for x in re.findall(r"\{[^{}]*\}", out.stdout)), key=lambda r: r["rank"])
    assert [r["rank"] for r in ranks] == [0, 1]
    assert ranks[0]["hashed"] == ["a.bin"] and sorted(ranks[1]["hashed"]) == ["b.bin", "c.bin", "sub/d.bin"]
    assert all(r["same"] for r in ranks)  # every rank holds every digest, equal to one process's
    for r in ranks:  # the gather's own timeout: the usual 10 minutes plus 3x the expected hashing time
        assert r["timeouts"] and all(COLLECTIVE_TIMEOUT_S < t < COLLECTIVE_TIMEOUT_S + 60 for t in r["timeouts"])
    # a byte flipped in a file rank 1 hashed: both ranks agree the model is damaged, and it is set aside once
    assert [r["reusable_after_flip"] for r in ranks] == [False, False] and ranks[0]["moved"]
    assert len(list(tmp_path.glob("model.damaged-*"))) == 1
