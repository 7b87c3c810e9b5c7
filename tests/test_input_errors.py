"""An error in the user's input ends a runner with our one message (the key, the value, the fix) and no traceback;
HYDRA_FULL_ERROR=1 still prints the whole traceback. A bug keeps its traceback."""

import os
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from encore.cache.cache_only import CacheMiss
from encore.errors import DataError
from encore.errors import SettingError

from conftest import ROOT

sys.path.insert(0, str(ROOT / "experiments"))
from _runner import InputError, reported  # noqa: E402

CFG = OmegaConf.create({"method": {"encore": {"tau": 2.0}}, "data": {"path": None}, "stats": {}})


@pytest.mark.parametrize("error", [SettingError("stats.n_boot=0: use a whole number >= 1"),
                                   DataError("data.path='x.jsonl' does not exist. Fix: give an existing file"),
                                   CacheMiss("2 rating(s)", "python experiments/rate.py"),
                                   ValueError("method.encore.tau=-1: the temperature must be positive")])
def test_input_errors_leave_as_their_message_alone(error):
    with pytest.raises(InputError) as raised, reported(CFG):
        raise error
    assert str(raised.value) == str(error) and raised.value.__cause__ is error


@pytest.mark.parametrize("error", [ValueError("math domain error"), ValueError("shapes (3,) and (4,) not aligned"),
                                   RuntimeError("CUDA error: device-side assert triggered")])
def test_other_errors_keep_their_traceback(error):
    with pytest.raises(type(error)) as raised, reported(CFG):
        raise error
    assert raised.value is error


def test_runners_print_the_message_without_a_traceback_unless_hydra_full_error(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
               ENCORE_RUNS_DIR=str(tmp_path / "runs"), ENCORE_CACHE_DIR=str(tmp_path / "cache"), HF_HUB_OFFLINE="1")
    env.pop("HYDRA_FULL_ERROR", None)
    evaluate = [sys.executable, str(ROOT / "experiments" / "evaluate.py"), "logger=none"]
    missing = tmp_path / "mine" / "pairs.jsonl"
    runs = {"tau": (evaluate + ["method.encore.tau=-1"], env),
            "file": (evaluate + ["data=local", f"data.path={missing}"], env),
            "full": (evaluate + ["method.encore.tau=-1"], dict(env, HYDRA_FULL_ERROR="1"))}
    procs = {k: subprocess.Popen(c, cwd=ROOT, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for k, (c, e) in runs.items()}  # three at once: most of each is importing
    out = {k: p.communicate(timeout=300) + (p.returncode,) for k, p in procs.items()}
    _, err, rc = out["tau"]
    assert rc == 1 and "Traceback" not in err, err
    assert "method.encore.tau=-1: the temperature must be a positive finite number (paper default 2)" in err
    assert len(err.strip().splitlines()) <= 4  # the overrides, the message, Hydra's HYDRA_FULL_ERROR hint
    _, err, rc = out["file"]
    assert rc == 1 and "Traceback" not in err and f"data.path='{missing}' does not exist. Fix:" in err, err
    _, err, rc = out["full"]
    assert rc == 1 and "Traceback" in err and "method.encore.tau=-1" in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("metrics.json"))


@pytest.mark.parametrize("overrides, key", [(["data=local"], "data.path"), (["rater=file"], "rater.path"),
                                            (["eval=local"], "eval.path")])
def test_a_value_the_user_must_give_is_named_before_anything_runs(overrides, key):
    from conftest import make_cfg
    from encore.run.settings import check_settings

    cfg = make_cfg(*overrides, cache=ROOT / "unused")
    assert cfg.experiment_name  # an own file's name while it is unset: the job starts and this check names it
    with pytest.raises(SettingError, match=rf"^{key}: not set \(\?\?\?\)\. Fix: add {key}=<value>"):
        check_settings(cfg)
