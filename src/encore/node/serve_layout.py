"""How slurm/rate_vllm_server.sbatch splits a node into `vllm serve` copies: the tensor-parallel size of one copy
(``auto``: the fewest GPUs that hold it, decided as ``rater=vllm`` decides it in process,
:func:`encore.scale.tensor_parallel.place_vllm`) and as many copies as the visible GPUs hold, each on a block of its
own. The recipe then points ``rater.base_url`` at all of them; every copy serves the same model, so the ratings and
their cache key are those of one server.

    python -m encore.node.serve_layout --model meta-llama/Meta-Llama-3-70B-Instruct --max-length 4096

prints the tensor-parallel size and the number of copies on the first line, then each copy's devices (the values
for its ``CUDA_VISIBLE_DEVICES``, taken from the job's own ``CUDA_VISIBLE_DEVICES`` when SLURM set one; an empty
line on a machine without GPUs). A model that does not fit exits 2 with the placement's reason and fix.
"""

from __future__ import annotations

import argparse
import os
import sys

from encore.scale.hardware import Gpus


def layout(model: str, max_length: int, tp: str = "auto", copies: str = "auto", dtype: str = "auto",
           gpu_memory_utilization: float = 0.90, gpus: Gpus | None = None,
           arch: dict | None = None) -> tuple[int, list[list[str]]]:
    """``(tensor parallel size, devices of each copy)`` for ``model`` on ``gpus`` (default: the GPUs this process
    sees). An explicit ``tp`` is checked as rater=vllm checks it; ``copies`` (default ``auto``: every GPU a block
    fills) may ask for fewer, or, on the CPU build, for several (each a whole server on the same cores: a test
    setting). ``arch``: architecture numbers for when the model's config cannot be read (as ``rater.arch``)."""
    from encore.rating.vllm import VLLMRater
    from encore.scale.arch import ArchError
    from encore.scale.hardware import detect
    from encore.scale.placement import DoesNotFit

    if str(copies) != "auto" and not str(copies).isdigit():
        raise ValueError(f"COPIES={copies}: a whole number of servers, or auto (as many as the GPUs hold)")
    gpus = gpus if gpus is not None else detect()
    rater = VLLMRater(model=model, max_length=max_length, tensor_parallel_size=tp, dtype=dtype,
                      gpu_memory_utilization=gpu_memory_utilization, arch=arch)
    try:
        place = rater.placement(gpus)
    except ArchError as e:
        if str(tp) == "auto":
            raise ValueError(f"{e}; or set TP (and COPIES) in the recipe's environment") from e
        print(f"serve_layout: TP={tp} not checked against {model}: {e}", file=sys.stderr)
        place = None
    if place is not None and not place.fits:
        raise DoesNotFit(f"vllm serve {model}: {place.summary()}".replace("rater.tensor_parallel_size", "TP"))
    t = place.tensor_parallel if place is not None and place.tensor_parallel else int(tp)
    room = gpus.count // t if gpus.count else 1
    n = room if copies == "auto" else int(copies)
    if n < 1 or (gpus.count and n > room):
        raise DoesNotFit(f"COPIES={copies}: {gpus.count} GPU(s) hold {room} copies of tensor parallel {t}; "
                         f"set COPIES between 1 and {room}, or leave it unset (all of them)")
    seen = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    ids = [d for d in seen.split(",") if d.strip()] if seen.strip() else [str(i) for i in range(gpus.count)]
    return t, [ids[i * t:(i + 1) * t] if gpus.count else [] for i in range(n)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m encore.node.serve_layout", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--max-length", type=int, default=4096, help="rater.max_length (the server's context is one more)")
    ap.add_argument("--tp", default="auto", help="tensor parallel size of one copy (default auto)")
    ap.add_argument("--copies", default="auto", help="number of servers (default auto: as many as the GPUs hold)")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--gpu-memory-utilization", type=float, default=0.90)
    a = ap.parse_args(argv)
    from encore.scale.placement import DoesNotFit

    try:
        t, blocks = layout(a.model, a.max_length, a.tp, a.copies, a.dtype, a.gpu_memory_utilization)
    except (DoesNotFit, ValueError) as e:
        print(e, file=sys.stderr)
        return 2
    print(t, len(blocks))
    for block in blocks:
        print(",".join(block))
    return 0


if __name__ == "__main__":
    sys.exit(main())
