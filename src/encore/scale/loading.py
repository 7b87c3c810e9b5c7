"""Loading a ``transformers`` model where :mod:`encore.scale.placement` decided it goes: one GPU, several GPUs through
accelerate's ``device_map`` (inputs then go to the device of the input embeddings), or the CPU, with optional CPU/
disk offload. Random-weight models built from a config (tests, tiny models) take the same route through accelerate's
``dispatch_model``, so what the tests prove about spreading a model holds for the hub path too.
"""

from __future__ import annotations

import gc
import logging
import shutil
import tempfile
import weakref
from typing import Any

import torch

from encore.scale.arch import Arch, config_from_dict, describe, read_config
from encore.scale.hardware import Gpus, detect
from encore.scale.placement import Placement

log = logging.getLogger(__name__)


def target_gpus(device: str, headroom: float = 0.08) -> Gpus:
    """``device=cpu`` plans for no GPU; ``auto`` and ``cuda`` for the GPUs this process sees, by their free memory."""
    if device == "cpu":
        return Gpus(0, 0, f"device={device}", headroom)
    gpus = detect(headroom, free=True)
    if device not in ("auto", "cuda") and not device.startswith("cuda"):
        raise ValueError(f"device={device!r}; use auto, cuda or cpu")
    if device != "auto" and not gpus.count:
        raise ValueError(f"device={device!r} but no CUDA device is visible; use device=auto or device=cpu")
    return gpus


def model_arch(name_or_path: str, revision: str | None, config: dict | None, recorded: dict | None,
               vocab_size: int | None, head: str, field: str) -> Arch:
    """The architecture of the model a stage will load: from ``config`` (random weights), a readable config, or the
    numbers recorded in ``<field>.arch``."""
    if config:
        cfg, source = config_from_dict(config, vocab_size), f"{field}.config (random weights)"
    else:
        cfg, source = read_config(name_or_path, revision, recorded, field)
    return describe(cfg, name_or_path, source, head)


def load_model(auto_cls: Any, name_or_path: str, *, revision: str | None, config: dict | None, vocab_size: int | None,
               seed: int, dtype: torch.dtype, place: Placement, offload_folder: str | None = None) -> Any:
    """``auto_cls`` (AutoModelForCausalLM / AutoModel) from the hub or a path, or built from ``config`` with
    ``seed``, then placed as ``place`` says. Returns the model in eval mode. A disk-offload folder this function
    made itself (``offload_folder`` unset) is removed when the model is freed or the process exits."""
    kw = place.load_kwargs()
    needs_disk = _uses_disk(kw.get("device_map"), kw.get("max_memory"))
    folder = offload_folder or (tempfile.mkdtemp(prefix="encore-offload-") if needs_disk else None)
    own = folder if folder and not offload_folder else None  # ours to remove once the model is gone
    try:
        model = _load(auto_cls, name_or_path, revision, config, vocab_size, seed, dtype, kw, folder)
    except BaseException:
        if own:
            shutil.rmtree(own, ignore_errors=True)
        raise
    if own:  # the offloaded weights live as long as the model (or the process), then the folder goes
        weakref.finalize(model, shutil.rmtree, own, True)
    return model


def _load(auto_cls: Any, name_or_path: str, revision: str | None, config: dict | None, vocab_size: int | None,
          seed: int, dtype: torch.dtype, kw: dict, folder: str | None) -> Any:
    from encore.scale.paths import resolve_model_path

    if not config:
        model = auto_cls.from_pretrained(resolve_model_path(name_or_path), revision=revision, dtype=dtype,
                                         **kw, **({"offload_folder": folder} if folder else {}))
        return model.eval()
    torch.manual_seed(seed)
    model = auto_cls.from_config(config_from_dict(config, vocab_size)).to(dtype)
    dmap = kw.get("device_map")
    if dmap is None:
        return model.eval()
    if dmap == {"": 0}:
        return model.to("cuda:0").eval()
    from accelerate import dispatch_model

    if not isinstance(dmap, dict):  # "auto" / "balanced" / "sequential": split as from_pretrained splits
        dmap = split(model, dmap, kw.get("max_memory"))
    return dispatch_model(model, device_map=dmap, offload_dir=folder).eval()


def split(model: Any, strategy: str, max_memory: dict | None) -> dict:
    """The device map ``from_pretrained(device_map=strategy, max_memory=...)`` computes: transformers' balanced caps
    (``get_balanced_memory``) unless ``"sequential"``, then accelerate's ``infer_auto_device_map`` with the model's
    no-split modules."""
    from accelerate import infer_auto_device_map

    no_split = getattr(model, "_no_split_modules", None)
    caps = max_memory
    if strategy != "sequential":
        from transformers.integrations.accelerate import get_balanced_memory

        caps = get_balanced_memory(model, max_memory=caps, no_split_module_classes=no_split,
                                   low_zero=strategy == "balanced_low_0")
    return infer_auto_device_map(model, max_memory=caps, no_split_module_classes=no_split)


def _uses_disk(device_map: Any, max_memory: dict | None) -> bool:
    if isinstance(device_map, dict) and "disk" in device_map.values():
        return True
    return bool(max_memory) and "disk" in {str(k) for k in max_memory}


def release_memory() -> None:
    """After the caller dropped its last reference to a model: give its GPU memory back to the driver (a stage
    after rating may need the GPUs the rater held)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
