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
_NAMED = re.compile(r"^\s*(\d+)\s*[x×*]\s*([A-Za-z][\w -]*?)\s*$")
MIB = 2 ** 20
# Known GPUs: (name as it appears in torch.cuda.get_device_name, memory in bytes as torch reports it, dense bf16
# TFLOP/s without sparsity from NVIDIA's datasheets, where the memory figure comes from). Matched in this order, so the
# more specific name comes first. The memory is ``torch.cuda.get_device_properties(i).total_memory`` (CUDA's
# ``totalGlobalMem``), what :func:`detect` reads at run time, not the 80 x 10^9 of the box: the driver keeps part of
# the card (this workplace saw nvidia-smi show "NVIDIA H100 80GB HBM3" with 81,559 MiB; torch reports less). Public
# prints of it vary a little with the driver; the smallest one found is taken, so the plan never assumes more than a
# card gives.
KNOWN_GPUS: tuple[tuple[str, int, float, str], ...] = (
    ("H100 PCIe", 81082 * MIB, 756.0, "inferred: the H100 80GB HBM3's figure (same 80 GB of memory; no public torch "
                                      "print of an H100 PCIe found)"),
    ("H100 NVL", 94 * GB, 835.0, "inferred: the nominal 94 x 10^9 bytes (no public torch print found; likely a little "
                                 "high)"),
    ("H100", 81082 * MIB, 989.0, "torch total_memory=81082MB (MiB) printed for 'NVIDIA H100 80GB HBM3' (torch 2.0.1, "
                                 "public issue thread); other drivers print 81089-81106 MiB (torch 2.7 / cu12.8: 81089; "
                                 "CUDA deviceQuery, thamada/nvidia-smi nvsim/H100SXMx8_deviceQuery.py: 85,045,477,376 "
                                 "bytes = 81106 MiB)"),
    ("H200", 143156 * MIB, 989.0, "torch total_memory=143156MB (MiB) printed for 'NVIDIA H200' (a public vLLM example "
                                  "script's comment, found by code search)"),
    ("B200", 182642 * MIB, 2250.0, "torch total_memory=182642MB (MiB) printed for 'NVIDIA B200' (the same script)"),
    ("A100", 81049 * MIB, 312.0, "CUDA totalGlobalMem 81049 MiB for 'NVIDIA A100 80GB PCIe' (ekondis/mixbench issue "
                                 "#47); an A100-SXM4-80GB printed 81221.8 MiB elsewhere: the smaller is taken. A 40 GB "
                                 "A100 is planned with plan.gpus=8x40GB"),
    ("L40S", 48 * GB, 362.0, "inferred: the nominal 48 x 10^9 bytes (no public torch print found; likely a little "
                             "high)"),
)
# The GPU a bare size (plan.gpus=8x80GB) is assumed to be, for its peak: the newest data-centre GPU of that memory
# (80 GB: the H100 SXM the paper trained on; an A100 80GB or H100 PCIe is named to be planned as one). Its memory
# stays the bare size, read as decimal bytes (GPUs are sold in 10^9-byte GB): name the GPU for torch's figure.
ASSUMED_FOR_GB = {80: "H100", 94: "H100 NVL", 141: "H200", 180: "B200", 48: "L40S"}


class HardwareError(ValueError):
    """A hardware description that cannot be read; the message names the field and the fix."""


@dataclass(frozen=True)
class Gpus:
    """``count`` GPUs of ``memory`` bytes each (total memory, before the headroom) on each of ``nodes`` machines;
    ``peak_tflops``: dense bf16 TFLOP/s of one of them, when known (a named GPU, or ``plan.peak_tflops``)."""

    count: int
    memory: int
    source: str  # "detected", "plan.gpus=8x80GB", "none (CPU)"
    headroom: float = 0.08
    nodes: int = 1
    peak_tflops: float | None = None
    name: str = ""  # the GPU type when known: detected, or named in plan.gpus=8xH100
    memory_from: str = ""  # where ``memory`` comes from, said in the plan (a named GPU's public figure, a bare size)

    @property
    def usable(self) -> int:
        """Bytes per GPU that weights, KV cache, activations and optimiser state may take."""
        return int(self.memory * (1 - self.headroom))

    def describe(self) -> str:
        if not self.count:
            return "no GPU (CPU)"
        nodes = f"{self.nodes} nodes of " if self.nodes > 1 else ""
        return (f"{nodes}{self.count} x {self.memory:,} bytes = {self.memory / GIB:.2f} GiB = {self.memory / GB:.1f} GB "
                f"({self.source}; {self.usable / GB:.1f} GB usable each after {self.headroom:.0%} headroom)")


def known_gpu(name: str) -> tuple[str, int, float, str] | None:
    """The :data:`KNOWN_GPUS` entry whose name occurs in ``name`` (case and spaces ignored), or None."""
    flat = re.sub(r"[\s_-]", "", name).lower()
    return next((g for g in KNOWN_GPUS if re.sub(r"[\s_-]", "", g[0]).lower() in flat), None)


def peak_bf16_tflops(name: str) -> float | None:
    """Dense bf16 TFLOP/s of the GPU called ``name`` (e.g. "NVIDIA H100 80GB HBM3"), None when not in the table."""
    g = known_gpu(name)
    return g[2] if g else None


def parse_gpus(spec: str | None, headroom: float = 0.08) -> Gpus | None:
    """``"8xH100"`` (a known GPU: the memory torch reports for it, :data:`KNOWN_GPUS`, and its bf16 peak),
    ``"8x80GB"`` (a bare size: decimal GB, 80 x 10^9 bytes, as GPUs are sold), ``"2x79.11GiB"`` (binary),
    ``"cpu"``/``"0"`` (no GPU); ``auto`` or ``None`` returns None (detect instead). The source says which figure
    was taken and from where, so the plan prints it."""
    if spec is None or str(spec).strip().lower() in ("", "auto", "none", "null"):
        return None
    text = str(spec).strip()
    if text.lower() in ("cpu", "0"):
        return Gpus(0, 0, f"plan.gpus={text}", headroom)
    m, named = _SPEC.match(text), _NAMED.match(text)
    gpu = known_gpu(named.group(2)) if named and not m else None
    if gpu and int(named.group(1)) >= 1:
        return Gpus(int(named.group(1)), gpu[1], f"plan.gpus={text}", headroom, peak_tflops=gpu[2], name=gpu[0],
                    memory_from=f"what torch reports for an {gpu[0]} (total_memory): {gpu[3]}")
    if not m or int(m.group(1)) < 1:
        names = ", ".join(g[0].replace(" ", "") for g in KNOWN_GPUS)
        raise HardwareError(f"plan.gpus={text!r}: write COUNTxMEMORY, e.g. plan.gpus=8x80GB or plan.gpus=1x141GB, "
                            f"or COUNTxNAME of a known GPU ({names}), or plan.gpus=cpu")
    unit = (m.group(3) or "GB").lower()
    scale = GIB if unit == "gib" else GB
    size = int(float(m.group(2)) * scale)
    how = ("binary GiB" if scale == GIB else
           f"decimal GB: {float(m.group(2)):g} x 10^9 bytes; a named GPU, e.g. plan.gpus={m.group(1)}xH100, plans "
           "with the memory torch reports for it")
    return Gpus(int(m.group(1)), size, f"plan.gpus={text}", headroom, memory_from=how)


def plan_peak(gpus: Gpus, override: float | None = None) -> tuple[float | None, str]:
    """(dense bf16 TFLOP/s per GPU, where that number comes from) for the plan's hours: ``plan.peak_tflops`` when
    set, else the named or detected GPU's, else the GPU :data:`ASSUMED_FOR_GB` assumes for a bare size, said so;
    (None, one line asking for the type) when nothing fits."""
    if override:
        return float(override), f"plan.peak_tflops={float(override):g}"
    if gpus.peak_tflops:
        return gpus.peak_tflops, f"the {gpus.name}'s" if gpus.name else "the GPU's"
    if not gpus.count:
        return None, "no GPU"
    assumed = known_gpu(ASSUMED_FOR_GB.get(round(gpus.memory / GB), "-"))
    if assumed is None:  # a size given in GiB, or torch's figure: the known GPU whose reported memory it is
        assumed = next((g for g in KNOWN_GPUS if abs(g[1] - gpus.memory) < 0.02 * g[1] and " " not in g[0]), None)
    if assumed is None:
        return None, ("hours need the GPU type: name it (plan.gpus=8xH100) or set plan.peak_tflops; "
                      f"{gpus.memory / GB:.0f} GB is no GPU the plan knows")
    return assumed[2], (f"assumed {assumed[0]} for {gpus.memory / GB:.0f} GB GPUs; name the type for another, e.g. "
                        f"plan.gpus={gpus.count}xA100 for the A100's 312")


def launched_nodes() -> int:
    """Machines of the distributed job this process belongs to: ``WORLD_SIZE / LOCAL_WORLD_SIZE`` as torchrun (and
    so ``accelerate launch``) sets them; 1 outside a launcher."""
    world, local = int(os.environ.get("WORLD_SIZE") or 1), int(os.environ.get("LOCAL_WORLD_SIZE") or 0)
    return max(1, -(-world // local)) if local else 1


def own_devices(n: int) -> list[int]:
    """The visible CUDA devices this process uses: its ``LOCAL_RANK``'s under a launcher (one GPU per rank), else
    all ``n`` it sees (one process spreading a model with ``device_map``; ``CUDA_VISIBLE_DEVICES`` already limits
    what it sees)."""
    rank = os.environ.get("LOCAL_RANK")
    if rank not in (None, "") and n > 1:
        return [int(rank) % n]
    return list(range(n))


def detect(headroom: float = 0.08, free: bool = False) -> Gpus:
    """The GPUs this process sees (``CUDA_VISIBLE_DEVICES`` respected); the smallest one stands for all of them, so
    a mixed node is planned by its weakest card. ``free``: memory free now (what a load can still take, other
    processes and models already loaded included) instead of the total, read on this process's own GPU(s) only
    (:func:`own_devices`): ``torch.cuda.mem_get_info(i)`` opens a CUDA context on device ``i``, and eight ranks
    each opening one on all eight GPUs would take 8 contexts' memory from every GPU. Reading the total
    (``get_device_properties``) opens none."""
    import torch

    if not torch.cuda.is_available() or torch.cuda.device_count() == 0:
        return Gpus(0, 0, "none (CPU)", headroom)
    n = torch.cuda.device_count()
    mems = [torch.cuda.mem_get_info(i)[0] if free else torch.cuda.get_device_properties(i).total_memory
            for i in (own_devices(n) if free else range(n))]
    name = torch.cuda.get_device_properties(0).name
    return Gpus(n, int(min(mems)), "detected, free now" if free else "detected", headroom, launched_nodes(),
                peak_bf16_tflops(name), name, "torch.cuda.mem_get_info, free now" if free else
                "torch.cuda.get_device_properties(i).total_memory, the smallest of the visible GPUs")


def host_ram() -> int:
    """Physical memory of this machine in bytes (Linux; 0 when unknown)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def fmt_bytes(n: float) -> str:
    return f"{n / GB:.1f} GB" if n >= 0.1 * GB else f"{n / 2 ** 20:.0f} MB"
