"""What a run knows about the Hydra job it runs in: the commands its errors name (with the job's own overrides) and
the name and group of its wandb run. Outside a Hydra job (tests calling ``run_*`` directly) each falls back to a
plain form."""

from __future__ import annotations

import shlex
from pathlib import Path

# overrides that describe how a job was launched, not what it computes: left out of the commands an error names
_LAUNCH = ("rating.shard", "rating.num_shards", "hydra/launcher", "cache_only")


def _task_overrides() -> list[str] | None:
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    return [o for o in HydraConfig.get().overrides.task if not o.split("=")[0].lstrip("+~").startswith(_LAUNCH)]


def rate_command() -> str:
    """``python experiments/rate.py`` with this job's own overrides, so an error names the command that rates what is
    missing."""
    keep = _task_overrides()
    return " ".join(["python experiments/rate.py", *(map(shlex.quote, keep) if keep is not None else ["<your overrides>"])])


def rater_overrides() -> list[str] | None:
    """The overrides that chose this job's rater (``rater=vllm_server rater.model=...``), recorded beside its
    ratings so a later job of another recipe can be told how to use them; None outside Hydra."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    own = [o for o in hc.overrides.task if o.lstrip("+~").startswith("rater.")]
    return [f"rater={hc.runtime.choices.get('rater')}", *own]


def fill_command() -> str:
    """The one run that computes everything this cache-only job reads: the same runner with the job's overrides
    (its swept value included) and ``cache_only=false``."""
    from hydra.core.hydra_config import HydraConfig

    keep = _task_overrides()
    if keep is None:
        return "python experiments/evaluate.py <your overrides> cache_only=false"
    return " ".join([f"python experiments/{HydraConfig.get().job.name}.py", *map(shlex.quote, keep), "cache_only=false"])


def swept() -> dict[str, str]:
    """The values this job of a multirun was given by the sweeper (e.g. ``{"method.encore.tau": "0.5"}``)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return {}
    params = set((HydraConfig.get().sweeper.get("params") or {}).keys())
    pairs = (o.split("=", 1) for o in HydraConfig.get().overrides.task if "=" in o)
    return {k.lstrip("+~"): v for k, v in pairs if k.lstrip("+~") in params}


def wandb_names(experiment: str, job: str) -> dict[str, str]:
    """wandb ``name`` and ``group``: runs are named after the experiment and the swept values (``tau_sweep
    method.encore.tau=0.5``); the jobs of one multirun share a group named after its sweep directory, single runs
    the experiment's group."""
    from hydra.core.hydra_config import HydraConfig

    values = swept()
    name = " ".join([experiment, *(f"{k}={v}" for k, v in values.items())]) if values else f"{experiment} {job}"
    group = experiment
    if values:
        group = f"{experiment} {Path(HydraConfig.get().sweep.dir).name}"
    return {"name": name, "group": group}
