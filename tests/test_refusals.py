"""Refusals as promised (issue 33): a cache miss in a read-only cache, a number of replicas that is not whole, and a
rule set too small for a correlation each end with one message naming the key (or folder) and the fix. Before: a
43-line traceback, ``rating.replicas=1.5`` ran as 1, and K = 2 rules read "CI unavailable: too few pairs"."""

import errno
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, make_cfg
from encore.cache.artifacts import NotWritable, write_json
from encore.entropy import correlation, rating_entropy, rule_accuracy
from encore.errors import SettingError
from encore.run.settings import check_settings
from encore.run.summary import study_line
from encore.stats import bootstrap_correlation_ci


def _env(tmp_path, **extra):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
               ENCORE_RUNS_DIR=str(tmp_path / "runs"), ENCORE_CACHE_DIR=str(tmp_path / "cache"), HF_HUB_OFFLINE="1",
               **extra)
    env.pop("HYDRA_FULL_ERROR", None)
    return env


def _read_only(folder) -> list[str] | None:
    """A command prefix that runs its command with ``folder`` read-only: a read-only bind mount in a user and mount
    namespace (root ignores file modes), or plain file modes for another user; None where neither works."""
    if os.geteuid() != 0:
        os.chmod(folder, 0o555)
        return []
    if shutil.which("unshare") is None:
        return None
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount --bind {folder} {folder} && mount -o "
                            f"remount,bind,ro {folder} && ! touch {folder}/probe"], capture_output=True)
    if probe.returncode != 0:
        return None
    return ["unshare", "-rm", "sh", "-c", f'mount --bind {folder} {folder} && mount -o remount,bind,ro {folder} && '
            'exec "$@"', "sh"]


def test_a_cache_miss_in_a_read_only_cache_is_one_message_naming_the_folder_and_the_setting(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    prefix = _read_only(cache)
    if prefix is None:
        pytest.skip("no way to make a folder read-only for this user here (root without mount namespaces)")
    rate = [sys.executable, str(ROOT / "experiments" / "rate.py"), "logger=none", "data.limit=2"]
    out = subprocess.run(prefix + rate, cwd=ROOT, env=_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr[-3000:]
    # the job's first check (encore.run.folders) names the folder before anything is read or written; a write that
    # fails later says the same through NotWritable (the next test)
    assert f"ENCORE_CACHE_DIR={cache}" in out.stderr and "cannot be written" in out.stderr, out.stderr[-3000:]
    assert "Fix: set ENCORE_CACHE_DIR to a folder you can write" in out.stderr or "Fix: set ENCORE_CACHE_DIR" in out.stderr
    assert len(out.stderr.strip().splitlines()) <= 4  # the overrides, the message, Hydra's HYDRA_FULL_ERROR hint


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES])
def test_a_read_only_write_is_not_writable_naming_the_folder(tmp_path, monkeypatch, code):
    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code), str(tmp_path / "cache" / "ratings"))

    monkeypatch.setenv("ENCORE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr("pathlib.Path.mkdir", refuse)
    with pytest.raises(NotWritable, match=rf"{tmp_path} is not writable \({os.strerror(code)}\), and this job must "
                                          r"write .*Fix: set cache_dir=<a writable folder> \(or ENCORE_CACHE_DIR"):
        write_json(tmp_path / "cache" / "ratings" / "x" / "identity.json", {})


@pytest.mark.parametrize("value", ["1.5", "0", "two", "-2"])
def test_replicas_that_are_not_a_whole_number_of_copies_are_refused(tmp_path, value):
    with pytest.raises(SettingError, match=rf"rating.replicas={value!r}|rating.replicas={value}:"):
        check_settings(make_cfg(f"rating.replicas={value}", cache=tmp_path))
    check_settings(make_cfg("rating.replicas=2", cache=tmp_path))
    check_settings(make_cfg("rating.replicas=auto", cache=tmp_path))


def test_the_rate_runner_refuses_fractional_replicas_before_any_replica_starts(tmp_path):
    rate = [sys.executable, str(ROOT / "experiments" / "rate.py"), "logger=none", "rating.replicas=2.5"]
    out = subprocess.run(rate, cwd=ROOT, env=_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr[-3000:]
    assert "rating.replicas=2.5: use auto" in out.stderr and "e.g. rating.replicas=1" in out.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("replica_*"))


def test_two_rules_say_the_interval_needs_three_rules_not_more_pairs():
    rng = np.random.default_rng(0)
    chosen, rejected = rng.uniform(size=(200, 2)), rng.uniform(size=(200, 2))  # 200 pairs, K = 2 rules
    H = rating_entropy(np.concatenate([chosen, rejected]))  # (K,)
    acc, _ = rule_accuracy(chosen, rejected)
    corr = {**correlation(H, acc), "n_pairs": 200,
            **bootstrap_correlation_ci(chosen, rejected, n_boot=200)}
    line = study_line(corr, "demo", None)
    assert "too few pairs" not in line
    assert "CI unavailable: a correlation over rules needs at least 3, this run has K = 2" in line
    assert "rules=..." in line
