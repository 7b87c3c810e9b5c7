"""A mistake on the command line ends in one message of ours (the key, what was given, the nearest valid names, the
fix; encore.run.override_errors), never Hydra's "To append to your config use +rule=mine"; an unwritable runs or
cache folder is named with what to set (encore.run.folders); a number setting of the wrong kind is named with what
to type (encore.run.kinds). Through the real Hydra: compose() in this process, and every runner as a user runs it."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from encore.errors import SettingError
from encore.run.folders import FolderError, cannot_write, check_cache, runs_folder
from encore.run.kinds import PLAN, check_kinds
from encore.run.override_errors import OverrideError, install

from conftest import CONF, ROOT

install()

# (overrides, what the message says, the overrides its fix names)
CASES = {
    "group typo": (["rule=mine"], ["rule=mine: there is no group or setting 'rule'", "Closest: rules",
                                   "DIR/rules/mine.yaml with --config-dir DIR"], None),
    "group typo, own option": (["rule=mine"], ["Closest: rules", "Fix: rules=mine."], ["rules=mine"]),
    "option typo": (["rules=safety01"], ["rules has no option 'safety01'", "Closest: safety10",
                                         "Options of rules: helpsteer2, pku_harm19"], ["rules=safety10"]),
    "option typo, nothing near": (["rules=mnie"], ["rules has no option 'mnie'", "safety10"], None),
    "rater typo": (["rater=hff"], ["rater has no option 'hff'", "Closest: hf"], ["rater=hf"]),
    "key typo": (["rater=file", "rater.pth=x"], ["rater.pth=x: rater=file has no key 'pth'", "Closest: path"],
                 ["rater=file", "rater.path=x"]),
    "key of another option": (["rater.pth=x"], ["rater=embedding has no key 'pth'", "path (rater=file)"],
                              ["rater=file", "rater.path=x"]),
    "key the data lacks": (["data.path=x"], ["data.path=x: data=demo has no key 'path'",
                                             "The options of data that have path: local,",
                                             "+data.path=x would add a key that nothing here reads"],
                           ["data=local", "data.path=x"]),
    "setting typo": (["stats.nboot=5"], ["stats has no key 'nboot'", "Closest: n_boot"], ["stats.n_boot=5"]),
    "transposed letters": (["rater=hf", "rater.modle=x"], ["Closest: model"], ["rater=hf", "rater.model=x"]),
    "a method's key under one method": (["method=encore", "method.encore.tau=3"],
                                        ["Under method=encore the key is method.tau=3."],
                                        ["method=all", "method.encore.tau=3"]),
    "the second of two options": (["data=local", "data=demo2"], ["data=demo2: data has no option 'demo2'"],
                                  ["data=demo"]),
    "Hydra's own advice": (["+rule=mine"], ["+rule=mine: adds a setting 'rule' that nothing reads (the run would "
                                            "use the default rules=safety10). Closest group: rules."], None),
    "experiment typo": (["experiment=paper_main"], ["Closest: paper_main_table"], ["experiment=paper_main_table"]),
}


def _compose(overrides, own=None):
    extra = [f"hydra.searchpath=[file://{own}]"] if own else []
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=[*extra, *overrides])


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_mistake_is_named_with_the_nearest_names_and_a_fix_that_composes(case, tmp_path):
    overrides, says, fixed = CASES[case]
    own = None
    if "own option" in case:  # a folder of the user's own adds rules/mine.yaml: rules=mine is then the fix
        (tmp_path / "rules").mkdir()
        (tmp_path / "rules" / "mine.yaml").write_text("rules:\n  kind: [The response is kind.]\n")
        own = tmp_path
    with pytest.raises(OverrideError) as raised:
        _compose(overrides, own)
    message = str(raised.value)
    assert isinstance(raised.value, ConfigCompositionException)  # still Hydra's kind of error for its callers
    for part in says:
        assert part in message, message
    assert "To append to your config" not in message and "\n" not in message
    if fixed is not None:
        assert f"Fix: {' '.join(o for o in fixed if o not in overrides)}" in message, message
        _compose(fixed, own)  # the fix composes


def test_a_setting_of_ones_own_may_still_be_added():
    assert _compose(["+my_note=pilot"]).my_note == "pilot"  # near no group: Hydra's + is the user's to use


def test_an_error_it_does_not_know_keeps_hydras_words():
    with pytest.raises(ConfigCompositionException) as raised:
        _compose(["+seed=1"])  # an item is already there: Hydra's message says exactly what to do
    assert not isinstance(raised.value, OverrideError) and "Either remove + prefix" in str(raised.value)


def _env(tmp_path, **extra):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
               ENCORE_RUNS_DIR=str(tmp_path / "runs"), ENCORE_CACHE_DIR=str(tmp_path / "cache"), HF_HUB_OFFLINE="1")
    env.update(extra)
    env.pop("HYDRA_FULL_ERROR", None)
    return env


def _run_all(runs: dict[str, tuple[list[str], dict]]) -> dict[str, tuple[str, int]]:
    procs = {k: subprocess.Popen([sys.executable, *c], cwd=ROOT, env=e, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for k, (c, e) in runs.items()}
    return {k: (p.communicate(timeout=300)[1], p.returncode) for k, p in procs.items()}  # stderr, exit status


# every Hydra runner, each with one mistake that fails while Hydra composes (no model or torch is loaded)
RUNNER_MISTAKES = {
    "reproduce": (["rule=mine"], "Closest: rules"),
    "rate": (["rater=hff"], "Fix: rater=hf;"),
    "correlation": (["data.path=x.jsonl"], "Fix: data=local data.path=x.jsonl."),
    "train_rm": (["rater.pth=r.csv"], "Fix: rater=file rater.path=r.csv."),
    "evaluate": (["stats.nboot=5"], "Fix: stats.n_boot=5."),
    "export": (["rules=mnie"], "rules has no option 'mnie'"),
    "plan": (["plan.mfuu=0.3"], "Fix: plan.mfu=0.3."),
    "benchmark": (["bench=engine"], "Fix: bench=engines;"),
    "gpu_check": (["rater=tiny_llama"], "Closest: tiny_llama3"),
}


def _check_runners(out):
    for name, (_, says) in RUNNER_MISTAKES.items():
        if name not in out:
            continue
        err, rc = out[name]
        assert rc == 1 and "Traceback" not in err and "To append" not in err and says in err, (name, err)
        assert len(err.strip().splitlines()) <= 3, (name, err)  # the message, a blank line, Hydra's hint


def _runs_folder_case(tmp_path):
    (tmp_path / "a_file").write_text("a regular file: even root cannot make a folder under it\n")
    return ([str(ROOT / "experiments" / "evaluate.py"), "logger=none"],
            _env(tmp_path, ENCORE_RUNS_DIR=str(tmp_path / "a_file" / "runs")))


def test_a_runner_names_a_mistyped_group_and_an_unwritable_runs_folder(tmp_path):
    """Two runners as a user runs them (the rest: the slow test below)."""
    out = _run_all({"reproduce": ([str(ROOT / "experiments" / "reproduce.py"), "rule=mine"], _env(tmp_path)),
                    "runs folder": _runs_folder_case(tmp_path)})
    _check_runners(out)
    err, rc = out["runs folder"]
    assert rc == 1 and "Traceback" not in err, err
    assert (f"ENCORE_RUNS_DIR={tmp_path / 'a_file' / 'runs'}: the runs folder cannot be written: "
            f"{tmp_path / 'a_file'} is a file, not a folder. Fix: set ENCORE_RUNS_DIR") in err, err


@pytest.mark.slow
def test_every_runner_ends_a_mistake_with_our_one_message_and_a_traceback_only_when_asked(tmp_path):
    """Twelve processes at once: seconds of CPU each for Python, Hydra and pandas, hence slow."""
    env = _env(tmp_path)
    runs = {name: ([str(ROOT / "experiments" / f"{name}.py"), *args], env)
            for name, (args, _) in RUNNER_MISTAKES.items()}
    runs["help"] = ([str(ROOT / "experiments" / "evaluate.py"), "data.path=x.jsonl", "--help"], env)
    runs["full"] = ([str(ROOT / "experiments" / "reproduce.py"), "rule=mine"], dict(env, HYDRA_FULL_ERROR="1"))
    out = _run_all(runs)
    _check_runners(out)
    err, rc = out["help"]  # --help composes outside Hydra's reporter: it was a traceback
    assert rc == 1 and "Traceback" not in err and "Fix: data=local data.path=x.jsonl." in err, err
    err, rc = out["full"]
    assert rc == 1 and "Traceback" in err and "Could not override 'rule'" in err and "Closest: rules" in err


@pytest.mark.slow
def test_runners_name_an_unwritable_cache_and_numbers_of_the_wrong_kind(tmp_path):
    """Each of these loads the runner's library (torch) before it fails, hence slow."""
    (tmp_path / "a_file").write_text("x\n")
    env = _env(tmp_path)
    runs = {"cache": ([str(ROOT / "experiments" / "correlation.py"), "logger=none"],
                      _env(tmp_path, ENCORE_CACHE_DIR=str(tmp_path / "a_file" / "cache"))),
            "plan": ([str(ROOT / "experiments" / "plan.py"), "plan.mfu=abc"], env),
            "gpu_check": ([str(ROOT / "experiments" / "gpu_check.py"), "n_pairs=2.5"], env),
            "stats": ([str(ROOT / "experiments" / "evaluate.py"), "logger=none", "stats.n_boot=abc"], env)}
    out = _run_all(runs)
    says = {"cache": f"ENCORE_CACHE_DIR={tmp_path / 'a_file' / 'cache'}: the artefact cache cannot be written",
            "plan": "plan.mfu='abc': use a share in [0, 1]", "gpu_check": "n_pairs=2.5: use a whole number >= 0",
            "stats": "stats.n_boot='abc': use a whole number >= 1"}
    for name, (err, rc) in out.items():
        assert rc == 1 and "Traceback" not in err and says[name] in err, (name, err)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.json"))


def test_a_folder_under_a_file_or_without_write_permission_cannot_be_written(tmp_path, monkeypatch):
    (tmp_path / "f").write_text("x")
    assert cannot_write(tmp_path / "f" / "runs") == f"{tmp_path / 'f'} is a file, not a folder"
    assert cannot_write(tmp_path / "new" / "deeper") is None and not (tmp_path / "new").exists()  # creates nothing
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != tmp_path)  # as for a user without the right
    assert "is not writable here" in cannot_write(tmp_path / "runs")
    monkeypatch.undo()
    monkeypatch.setenv("ENCORE_RUNS_DIR", str(tmp_path / "f" / "runs"))
    with pytest.raises(FolderError, match=r"ENCORE_RUNS_DIR=.*: the runs folder cannot be written"):
        runs_folder()
    monkeypatch.setenv("ENCORE_RUNS_DIR", str(tmp_path / "ok"))
    assert runs_folder() == str(tmp_path / "ok")
    cfg = OmegaConf.create({"cache_dir": str(tmp_path / "f" / "cache"), "cache_only": False})
    with pytest.raises(SettingError, match=r"cache_dir=.*: the artefact cache cannot be written.*ENCORE_CACHE_DIR"):
        check_cache(cfg)
    check_cache(OmegaConf.merge(cfg, {"cache_only": True}))  # a job that only reads a cache may read a read-only one


@pytest.mark.parametrize("value, message", [("abc", "plan.mfu='abc': use a share in [0, 1]"),
                                            (1.5, "plan.mfu=1.5: use a share in [0, 1]"),
                                            (True, "plan.mfu=True: use a share in [0, 1]")])
def test_plan_numbers_of_the_wrong_kind_are_named(value, message):
    cfg = OmegaConf.create({"plan": {"mfu": value, "sample": None, "headroom": 0.08}})
    with pytest.raises(SettingError, match=re.escape(message)):
        check_kinds(cfg, PLAN)
    check_kinds(OmegaConf.create({"plan": {"mfu": 0.4, "sample": None, "headroom": 0}}), PLAN)
