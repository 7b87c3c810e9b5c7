"""Run directories that two runs never share.

``hydra.run.dir`` is ``runs/<experiment>/<time>-${encore_run:}``: the time to the second, then a token that is the
same for every process of one launch and differs between launches. Two runs started in the same second get two
directories; the ranks of one ``accelerate launch`` / ``torchrun`` job get one (they share the launcher's rendezvous
address and port, and on one node its process id). The resolver is registered when the runners import
``_runner``; it caches its value, so every read of the run dir in a process, and every job of a Hydra multirun
(Hydra copies the resolver cache into each job's config), sees the same token.
"""

from __future__ import annotations

import os
import socket
import time

from omegaconf import OmegaConf

from encore.artifacts import content_hash

RESOLVER = "encore_run"


def run_token(environ: dict[str, str] | None = None) -> str:
    """Six hex digits naming this launch. A distributed launch (``WORLD_SIZE`` > 1) is named by its rendezvous
    (``MASTER_ADDR``, ``MASTER_PORT``, ``TORCHELASTIC_RUN_ID``, ``SLURM_JOB_ID``) and, when all its ranks are on one
    node, the launcher's process id (the ranks' parent); a single process by its host, process id and start time."""
    env = os.environ if environ is None else environ
    if int(env.get("WORLD_SIZE", "1")) > 1 and "MASTER_PORT" in env:
        one_node = env.get("LOCAL_WORLD_SIZE") == env.get("WORLD_SIZE")
        parts = ("launch", env.get("MASTER_ADDR"), env["MASTER_PORT"], env.get("TORCHELASTIC_RUN_ID"),
                 env.get("SLURM_JOB_ID"), os.getppid() if one_node else None)
    else:
        parts = ("process", socket.gethostname(), os.getpid(), time.time_ns())
    return content_hash(*parts, length=6)


def register() -> None:
    """Register ``${encore_run:}`` (idempotent)."""
    if not OmegaConf.has_resolver(RESOLVER):
        OmegaConf.register_new_resolver(RESOLVER, lambda: run_token(), use_cache=True)


register()
