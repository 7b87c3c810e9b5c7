"""Resumable training checkpoints that a kill at any moment leaves consistent, verified before they are resumed.

Layout under ``root``: one directory per saved step (``step-00000040/``: accelerate's ``save_state`` output, whatever
the strategy wrote — ``model.safetensors``, ``optimizer.bin``, ``scheduler.bin``, ``random_states_<rank>.pkl``, or
sharded FSDP / DeepSpeed folders — plus ``encore_state.json`` with the micro-step, the loss log and the size and
SHA-256 of every other file), and a pointer file ``LATEST`` naming the newest complete one. Every rank writes into
``step-N.tmp-<token>`` (a name unique to this save); after a barrier the ranks hash the files between them, the main process writes
``encore_state.json``, renames the directory to ``step-N`` and only then replaces ``LATEST`` (atomically), then
deletes all but the newest ``keep`` steps. A kill before the rename leaves a ``.tmp-*`` that nothing reads.

Resuming (:func:`resume`) takes the newest ``step-N`` whose files all match their recorded sizes and checksums. One
that does not (a truncated ``model.safetensors``, an empty ``optimizer.bin``, a malformed ``encore_state.json``, a
flipped byte, a checkpoint without checksums from an older version) is set aside as ``step-N.damaged-<token>`` with a
warning naming what is wrong, and the next older one is tried, down to starting from scratch. Under a launcher the
ranks hash a checkpoint's files between them (:func:`encore.scale.distributed.shared_hashes`, each about 1/world of
the bytes, in a gloo group whose timeout follows the expected verification time), so a 90 GB checkpoint never holds
the other ranks in a collective past its 10-minute timeout while one process hashes it all.
"""

from __future__ import annotations

import logging
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

from encore.cache.artifacts import filesystem_errors, read_json, write_bytes, write_json
from encore.cache.integrity import checksums, mismatch, set_aside, sizes
from encore.scale.distributed import shared_hashes

log = logging.getLogger(__name__)
POINTER = "LATEST"
STATE = "encore_state.json"
STEP = re.compile(r"step-\d{8}")


def step_dir(root: Path, micro_step: int) -> Path:
    return root / f"step-{micro_step:08d}"


def _shared_token(acc: Any) -> str:
    """A token the main process draws and every rank receives (the name of this save's temporary directory)."""
    token = [uuid.uuid4().hex[:12] if acc.is_main_process else None]
    if acc.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        broadcast_object_list(token)
    return token[0]


def save(acc: Any, root: Path, micro_step: int, logs: list[dict], keep: int = 1) -> Path:
    """Collective: every rank must call it. Returns the directory ``LATEST`` now names. A filesystem error (a full
    disk) is raised as the OSError it is, naming the path; the temporary directory is removed."""
    final = step_dir(root, micro_step)
    tmp = final.with_name(f"{final.name}.tmp-{_shared_token(acc)}")
    acc.wait_for_everyone()
    try:
        with filesystem_errors(tmp):
            acc.save_state(str(tmp))
        acc.wait_for_everyone()
        hashes = shared_hashes(acc, tmp, sizes(tmp, skip=(STATE,)))  # each rank hashes its share (None: one process)
        if acc.is_main_process:
            files = checksums(tmp, skip=(STATE,)) if hashes is None else \
                {rel: {**size, "sha256": hashes[rel]} for rel, size in sizes(tmp, skip=(STATE,)).items()}
            with filesystem_errors(tmp):
                write_json(tmp / STATE, {"micro_step": micro_step, "log": logs, "files": files})
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)
            write_bytes(root / POINTER, final.name.encode())
            for old in sorted(_steps(root))[:-max(keep, 1)]:
                shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    acc.wait_for_everyone()
    return final


def _steps(root: Path) -> list[Path]:
    return [d for d in root.glob("step-*") if STEP.fullmatch(d.name) and d.is_dir()]


def _listed(d: Path) -> dict[str, Any] | None:
    """The files ``d``'s state records (None when unreadable or absent: :func:`problem` says why)."""
    try:
        files = read_json(d / STATE).get("files")
    except (OSError, ValueError, AttributeError):
        return None
    return files if isinstance(files, dict) and files else None


def problem(d: Path, hashes: dict[str, str] | None = None) -> str | None:
    """What is wrong with checkpoint ``d`` (None: every file is there with its recorded size and checksum).
    ``hashes``: the files' SHA-256s, computed by the ranks together (otherwise hashed here)."""
    try:
        state = read_json(d / STATE)
    except FileNotFoundError:
        return f"no {STATE}"
    except (OSError, ValueError) as e:
        return f"{STATE} is unreadable ({type(e).__name__}: {e})"
    files = state.get("files") if isinstance(state, dict) else None
    if not isinstance(files, dict) or not files or "micro_step" not in state or "log" not in state:
        return f"{STATE} records no checksums or step (written by an older version or by hand)"
    return mismatch(d, files, skip=(STATE,), hashes=hashes)


def _verdict(root: Path, d: Path, hashes: dict[str, str] | None = None) -> tuple[Path, dict] | None:
    """(``d``, its state) when it passes :func:`problem`; otherwise None, with ``d`` set aside and a warning."""
    wrong = problem(d, hashes)
    if wrong is None:
        return d, read_json(d / STATE)
    aside = set_aside(d)
    if aside is not None:  # None: another process set it aside first
        older = [s.name for s in _steps(root)]
        log.warning("checkpoint %s is damaged (%s): set aside as %s; %s", d, wrong, aside.name,
                    f"trying {max(older)}" if older else "training starts from the beginning")
    return None


def latest(root: Path) -> tuple[Path, dict] | None:
    """The newest checkpoint that passes :func:`problem`, and its state; damaged ones on the way are set aside
    (renamed ``step-N.damaged-<token>``, kept until the training completes) with a warning. None: start over."""
    for d in sorted(_steps(root), reverse=True):
        found = _verdict(root, d)
        if found is not None:
            return found
    return None


def resume(acc: Any, root: Path) -> tuple[Path, dict] | None:
    """Collective: newest first, the ranks hash each checkpoint's files between them, the main process judges it
    (and sets aside what fails), every rank receives its answer; the first intact one is resumed."""
    if acc.num_processes <= 1:
        return latest(root)
    from accelerate.utils import broadcast_object_list

    for d in sorted(_steps(root), reverse=True):  # every rank lists the same shared directory
        hashes = shared_hashes(acc, d, _listed(d))
        found = [_verdict(root, d, hashes) if acc.is_main_process else None]
        broadcast_object_list(found)
        if found[0] is not None:
            return found[0]
    return None
