"""Cache-only jobs: a sweep or ablation job reads what an earlier run cached and never runs a rater or a backbone.

Inside ``with cache_only(command):`` every cache lookup that would have to compute raises :class:`CacheMiss`
naming ``command``, the single run that fills what is missing; the lookup happens before any model is loaded, so a
cache-key mismatch on a cluster costs seconds of CPU instead of a node loading a 70B rater. The switch is the
``cache_only`` setting (``true`` in ``conf/experiment/tau_sweep.yaml`` and ``ablation_topk.yaml``); the runners that
exist to fill caches (``rate.py``, ``train_rm.py``) ignore it.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator

_FILL_COMMAND: ContextVar[str | None] = ContextVar("encore_cache_only", default=None)


class CacheMiss(RuntimeError):
    """A cache-only job needed something that is not cached; the message names it and the command that fills it."""

    def __init__(self, what: str, command: str):
        self.what, self.command = what, command
        super().__init__(f"cache_only=true: missing from the cache: {what}. This job only reads caches (a sweep or "
                         f"ablation job never runs a rater or a backbone). Fill the cache with one run that may "
                         f"compute: {command} ; then start this job again")


@contextmanager
def cache_only(command: str | None) -> Iterator[None]:
    """Make every cache miss inside the block an error naming ``command``; ``None`` leaves computing allowed."""
    token = _FILL_COMMAND.set(command)
    try:
        yield
    finally:
        _FILL_COMMAND.reset(token)


def active() -> bool:
    """Whether the current job may only read caches."""
    return _FILL_COMMAND.get() is not None


def refuse_compute(what: str) -> None:
    """Call before computing ``what`` (a model pass, a training run, a rating): raises in a cache-only job."""
    command = _FILL_COMMAND.get()
    if command is not None:
        raise CacheMiss(what, command)
