"""`--help` is written from the composition a runner would run (experiments/_help.py): each runner's own description
and settings, every key shown settable exactly as shown, and every option of the groups on Hydra's search path, a
user's own folder (`--config-dir`, `hydra.searchpath`) included; nothing is a fixed list that a new file outdates."""

import ast
import importlib.util
import os
import re
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig

from conftest import CONF, ROOT

sys.path.insert(0, str(ROOT / "experiments"))
import _help  # noqa: E402  the runners' helper module, beside them in experiments/

RUNNERS = {"reproduce": "config", "rate": "config", "correlation": "config", "train_rm": "config",
           "evaluate": "config", "export": "config", "plan": "plan", "benchmark": "benchmark", "gpu_check": "gpu_check"}


def docstring(runner: str) -> str:
    return ast.get_docstring(ast.parse((ROOT / "experiments" / f"{runner}.py").read_text())) or ""


def help_of(runner: str, *overrides: str) -> tuple[str, object]:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name=RUNNERS[runner], overrides=list(overrides), return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        return _help.help_for(docstring(runner), cfg, runner), cfg


def block(text: str, title: str) -> list[str]:
    part = text.split(f"== {title}")[1].split("\n== ")[0]
    return [x for x in part.splitlines()[1:] if x.strip()]


@pytest.mark.parametrize("runner", sorted(RUNNERS))
def test_each_runner_describes_itself_and_every_key_it_shows_is_settable_as_shown(runner):
    text, cfg = help_of(runner)
    first = docstring(runner).splitlines()[0]
    assert text.startswith(f"{runner}.py: {first}")
    shown = [re.match(r"\s+(\S+?)=(\S+)", x) for x in block(text, f"Settings of {runner}.py")]
    pairs = [(m.group(1), m.group(2)) for m in shown if m]
    assert len(pairs) >= 2
    settable = [f"{k}={v}" for k, v in pairs if v != "???"]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        again = compose(config_name=RUNNERS[runner], overrides=settable)  # a key that is not there fails here
    for k, v in pairs:
        assert _help.shown(_help.current(again, k)) == v, k  # the value reads back as shown


def test_plan_help_names_its_own_keys_and_data_path_only_where_the_data_has_one():
    text, _ = help_of("plan")
    keys = [x.split("=")[0].strip() for x in block(text, "Settings of plan.py") if "=" in x.split()[0]]
    assert keys[:6] == ["plan.gpus", "plan.headroom", "plan.accelerate_config", "plan.sample", "plan.mfu",
                        "plan.peak_tflops"]
    assert "data.path" not in keys and "not in this composition: data.path" in text  # the demo reads no file
    local, _ = help_of("plan", "data=local")
    assert "  data.path=???" in local  # a value the user must give


@pytest.mark.slow  # 15-35 s quiet: kept out of the README's test command (5-minute budget)
def test_groups_list_every_option_on_the_search_path_with_a_users_own_folder(tmp_path):
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "mine.yaml").write_text("name: mine\nrules:\n  - {name: kind, text: The response is kind.}\n")
    (tmp_path / "extras").mkdir()
    (tmp_path / "extras" / "one.yaml").write_text("x: 1\n")
    text, _ = help_of("reproduce", f"hydra.searchpath=[file://{tmp_path}]")
    swapped = dict(x.split(": ", 1) for x in block(text, "Groups you can swap"))
    assert set(swapped) == {"data", "eval", "rules", "rater", "model", "train", "method", "logger", "experiment",
                            "hydra/launcher"}  # arch, bench, accelerate: included by other configs, not swapped
    for group, options in swapped.items():
        on_disk = {p.stem for p in (CONF / group).glob("*.yaml")} | ({"mine"} if group == "rules" else set())
        assert on_disk <= set(options.split(", ")), group
    assert block(text, "Groups your own folders add") == ["extras: one"]
    # every option listed composes as group=option (one composition per column of options)
    columns = {g: o.split(", ") for g, o in swapped.items()}
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        for i in range(max(map(len, columns.values()))):
            picks = [f"{g}={o[i]}" for g, o in columns.items() if i < len(o)]
            compose(config_name="config", overrides=[f"hydra.searchpath=[file://{tmp_path}]", *picks])


def test_a_real_help_resolves_under_hydra_with_config_dir(tmp_path):
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "mine.yaml").write_text("name: mine\nrules:\n  - {name: kind, text: The response is kind.}\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, str(ROOT / "experiments" / "evaluate.py"), "--config-dir", str(tmp_path),
                          "--help"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("encore: ENCORE") and "evaluate.py: Compose the reward model's heads" in out.stdout
    assert re.search(r"^rules: .*\bmine\b", out.stdout, flags=re.M) and "--config-dir,-cd" in out.stdout
    assert "method.encore.tau=2.0" in out.stdout and "does not encourage" not in out.stdout  # no rule texts


def test_make_figures_help_describes_it(capsys):
    """make_figures.py is argparse, not Hydra: its --help is its docstring and its two arguments."""
    spec = importlib.util.spec_from_file_location("make_figures", ROOT / "experiments" / "make_figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(SystemExit) as done:
        module.main(["--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "Rebuild every figure from run directories alone" in text and "--out" in text


def test_the_llm_judge_beside_every_method_is_one_override_that_help_shows():
    """Adding the judge took `+method@method.llm_judge=llm_judge`, shown nowhere: now `method=all_with_judge`, in the
    examples of reproduce.py and evaluate.py and among the method options, and it composes every method and the judge."""
    for runner in ("reproduce", "evaluate"):
        text, _ = help_of(runner)
        assert "rater=smollm2 method=all_with_judge" in text.split("== Settings")[0], runner
        assert "all_with_judge" in next(x for x in block(text, "Groups you can swap") if x.startswith("method:"))
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        both = compose(config_name="config", overrides=["rater=smollm2", "method=all_with_judge"])
        every = compose(config_name="config", overrides=["method=all"])
    assert set(both.method) == set(every.method) | {"llm_judge"}
    assert both.method.llm_judge._target_ == "encore.judge.LLMJudge"


def test_help_says_where_runs_and_the_cache_go():
    text, _ = help_of("reproduce")
    assert "ENCORE_RUNS_DIR=DIR        where runs go (unset: ./runs of the folder you run from)" in text
    assert "ENCORE_CACHE_DIR=DIR" in text
