"""The GPUs a stage may use: detected on this machine, or described by the user for a machine they are not on
(``plan.gpus=8x80GB``). Capacities are in bytes; ``usable`` keeps a headroom for the CUDA context, the caching
allocator's fragmentation and communication buffers, which no weight or activation estimate sees.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

GB = 10 ** 9
GIB = 2 ** 30
_SPEC = re.compile(r"^\s*(\d+)\s*[x×*]\s*(\d+(?:\.\d+)?)\s*(GB|GiB|G)?\s*$", re.IGNORECASE)


class HardwareError(ValueError):
    """A hardware description that cannot be read; the message names the field and the fix."""


@dataclass(frozen=True)
class Gpus:
    """``count`` GPUs of ``memory`` bytes each (total memory, before the headroom)."""

    count: int
    memory: int
    source: str  # "detected", "plan.gpus=8x80GB", "none (CPU)"
    headroom: float = 0.08

    @property
    def usable(self) -> int:
        """Bytes per GPU that weights, KV cache, activations and optimiser state may take."""
        return int(self.memory * (1 - self.headroom))

    def describe(self) -> str:
        if not self.count:
            return "no GPU (CPU)"
        return (f"{self.count} x {self.memory / GB:.0f} GB ({self.source}; {self.usable / GB:.1f} GB usable each after "
                f"{self.headroom:.0%} headroom)")


def parse_gpus(spec: str | None, headroom: float = 0.08) -> Gpus | None:
    """``"8x80GB"`` (decimal GB, as GPUs are sold), ``"2x141GiB"`` (binary), ``"cpu"``/``"0"`` (no GPU); ``auto`` or
    ``None`` returns None (detect instead)."""
    if spec is None or str(spec).strip().lower() in ("", "auto", "none", "null"):
        return None
    text = str(spec).strip()
    if text.lower() in ("cpu", "0"):
        return Gpus(0, 0, f"plan.gpus={text}", headroom)
    m = _SPEC.match(text)
    if not m or int(m.group(1)) < 1:
        raise HardwareError(f"plan.gpus={text!r}: write COUNTxMEMORY, e.g. plan.gpus=8x80GB or plan.gpus=1x141GB "
                            "(or plan.gpus=cpu)")
    unit = (m.group(3) or "GB").lower()
    scale = GIB if unit == "gib" else GB
    return Gpus(int(m.group(1)), int(float(m.group(2)) * scale), f"plan.gpus={text}", headroom)


def detect(headroom: float = 0.08, free: bool = False) -> Gpus:
    """The GPUs this process sees (``CUDA_VISIBLE_DEVICES`` respected); the smallest one stands for all of them, so
    a mixed node is planned by its weakest card. ``free``: memory free now (what a load can still take, other
    processes and models already loaded included) instead of the total."""
    import torch

    if not torch.cuda.is_available() or torch.cuda.device_count() == 0:
        return Gpus(0, 0, "none (CPU)", headroom)
    n = torch.cuda.device_count()
    mems = [torch.cuda.mem_get_info(i)[0] if free else torch.cuda.get_device_properties(i).total_memory
            for i in range(n)]
    return Gpus(n, int(min(mems)), "detected, free now" if free else "detected", headroom)


def host_ram() -> int:
    """Physical memory of this machine in bytes (Linux; 0 when unknown)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def fmt_bytes(n: float) -> str:
    return f"{n / GB:.1f} GB" if n >= 0.1 * GB else f"{n / 2 ** 20:.0f} MB"
