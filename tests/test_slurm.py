"""The SLURM recipe that serves the rater with vLLM inside the job, run here with bash (no SLURM needed) and a
stand-in for the `vllm serve` command: it must pass the flags that make ratings exact, wait for /health, rate through
rater=vllm_server, and leave no server behind, also when the server dies at start-up. The same recipe runs on the
real server in tests/test_vllm_engine.py (.ci/vllm_lane); these stay because they record the exact flags passed and
run in every CI run, which the lane (27 minutes from scratch here) does not."""

import json
import socket
import stat
import subprocess
import sys

import pytest

from conftest import ROOT
from test_pipeline import _env

RECIPE = ROOT / "slurm" / "rate_vllm_server.sbatch"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli(path, body):
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def _run(tmp_path, cache, vllm, port, **extra):
    env = _env(cache) | {"VLLM": vllm, "PYTHON": sys.executable, "MODEL": "tiny", "TP": "1", "PORT": str(port),
                         "LOG": str(tmp_path / "serve.log"), "ENCORE_RUNS_DIR": str(tmp_path / "runs"),
                         "HEALTH_TIMEOUT": "120"} | extra
    return subprocess.run(["bash", str(RECIPE), "rater.tokenizer=tiny-bpe", "data=demo", "data.limit=4", "logger=none"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow  # 15-35 s quiet: kept out of the README's test command (5-minute budget)
def test_recipe_starts_the_server_waits_for_health_rates_and_stops_it(tmp_path, cache):
    port = _free_port()
    fake = _cli(tmp_path / "vllm", f'exec {sys.executable} {ROOT}/tests/workers/fake_vllm_serve.py "$@" '
                                   f'--record {tmp_path}/serve-args.json')
    out = _run(tmp_path, cache, fake, port)
    assert out.returncode == 0, out.stderr[-3000:] + (tmp_path / "serve.log").read_text()[-2000:]
    assert "vllm serve healthy" in out.stdout
    served = json.loads((tmp_path / f"serve-args-{port}.json").read_text())
    assert served["logprobs_mode"] == "processed_logprobs" and served["enable_prefix_caching"]
    assert served["generation_config"] == "vllm" and served["port"] == str(port)
    report = json.loads(next((tmp_path / "runs").rglob("rating_report.json")).read_text())
    assert report["n_new"] == 4 * 2 * 10 and report["n_missing"] == 0
    with socket.socket() as s:  # the server went with the job
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_recipe_fails_clearly_when_the_server_dies_at_start(tmp_path, cache):
    dead = _cli(tmp_path / "vllm", 'echo "CUDA out of memory" >&2; exit 1')
    out = _run(tmp_path, cache, dead, _free_port())
    assert out.returncode == 1 and "vllm serve exited before it was healthy" in out.stderr
    assert "CUDA out of memory" in out.stderr
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").rglob("rating_report.json"))


def test_training_recipe_launches_accelerate_once_per_node_with_its_rank():
    env = {"PATH": "/usr/bin:/bin", "DRY_RUN": "1", "SLURM_NNODES": "2", "SLURM_GPUS_ON_NODE": "8",
           "MASTER_ADDR": "node001", "SLURM_JOB_ID": "1234", "PYTHON": "python"}
    out = subprocess.run(["bash", str(ROOT / "slurm" / "train_rm.sbatch"), "experiment=paper_main_table",
                          "train=finetune", "model.name_or_path=a path/with space"], cwd=ROOT, env=env,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    cmd = out.stdout
    assert cmd.startswith("srun --nodes=2 --ntasks-per-node=1 --cpus-per-task=64 ")  # not inherited by srun
    for part in ("--config_file conf/accelerate/fsdp.yaml", "--num_machines 2", "--num_processes 16",
                 "--machine_rank $SLURM_NODEID", "--main_process_ip node001", "--main_process_port 29734",
                 "experiments/train_rm.py experiment=paper_main_table train=finetune"):
        assert part in cmd, part
    assert r"model.name_or_path=a\ path/with\ space" in cmd  # arguments survive the shell


def test_training_recipe_hands_the_jobs_cpus_to_srun():
    """Since SLURM 22.05 srun does not inherit sbatch's --cpus-per-task: the recipe passes the job's own value."""
    env = {"PATH": "/usr/bin:/bin", "DRY_RUN": "1", "SLURM_NNODES": "1", "SLURM_GPUS_ON_NODE": "8",
           "MASTER_ADDR": "node001", "SLURM_CPUS_PER_TASK": "24", "PYTHON": "python"}
    out = subprocess.run(["bash", str(ROOT / "slurm" / "train_rm.sbatch")], cwd=ROOT, env=env, capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr
    assert "--cpus-per-task=24 " in out.stdout.split("bash -c")[0]


@pytest.mark.slow  # 15-35 s quiet: kept out of the README's test command (5-minute budget)
def test_recipe_starts_one_server_per_copy_and_rates_through_all_of_them(tmp_path, cache):
    """COPIES=2 (on a GPU node: the copies the GPUs hold, each on its own block; here two whole servers on the CPU):
    one server per port, each with its own log, every /health awaited, the ratings spread over both servers (each
    answers some, together exactly the 80 asked), and both gone after the job."""
    port = _free_port()
    fake = _cli(tmp_path / "vllm", f'exec {sys.executable} {ROOT}/tests/workers/fake_vllm_serve.py "$@" '
                                   f'--record {tmp_path}/serve-args.json')
    out = _run(tmp_path, cache, fake, port, COPIES="2")
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"vllm serve healthy at http://127.0.0.1:{port} http://127.0.0.1:{port + 1}" in out.stdout
    assert "2 copies of tensor parallel 1" in out.stdout
    assert (tmp_path / "serve.0.log").exists() and (tmp_path / "serve.1.log").exists()
    served = [int((tmp_path / f"serve-args-{p}.requests").read_text()) for p in (port, port + 1)]
    assert sum(served) == 4 * 2 * 10 and min(served) > 0, served
    report = json.loads(next((tmp_path / "runs").rglob("rating_report.json")).read_text())
    assert report["n_new"] == 4 * 2 * 10 and report["n_missing"] == 0
    for p in (port, port + 1):
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", p)) != 0


def test_recipe_stops_before_any_server_when_the_copies_do_not_fit(tmp_path, cache):
    """A layout that cannot work (TP=auto for a model whose config cannot be read here) stops the job with the
    reason and exit 2, and no server is started."""
    dead = _cli(tmp_path / "vllm", f"touch {tmp_path}/started; sleep 60")
    out = _run(tmp_path, cache, dead, _free_port(), TP="auto")
    assert out.returncode == 2 and "cannot read the config of 'tiny'" in out.stderr
    assert "set TP (and COPIES)" in out.stderr and not (tmp_path / "started").exists()


def test_recipe_plans_the_layout_with_vllm_args(tmp_path, cache):
    """The servers' extra flags (VLLM_ARGS) reach the layout (python -m encore.node.serve_layout): a flag the plan
    reads with a value vLLM would refuse stops the job before any server starts (it was ignored)."""
    dead = _cli(tmp_path / "vllm", f"touch {tmp_path}/started; sleep 60")
    out = _run(tmp_path, cache, dead, _free_port(), VLLM_ARGS="--enforce-eager --gpu-memory-utilization lots")
    assert out.returncode == 2 and "VLLM_ARGS: --gpu-memory-utilization 'lots'" in out.stderr
    assert not (tmp_path / "started").exists()
