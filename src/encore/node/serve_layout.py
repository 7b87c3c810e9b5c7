"""How slurm/rate_vllm_server.sbatch splits a node into `vllm serve` copies: the tensor-parallel size of one copy
(``auto``: the fewest GPUs that hold it, decided as ``rater=vllm`` decides it in process,
:func:`encore.scale.tensor_parallel.place_vllm`) and as many copies as the visible GPUs hold, each on a block of its
own. The recipe then points ``rater.base_url`` at all of them; every copy serves the same model, so the ratings and
their cache key are those of one server.

    python -m encore.node.serve_layout --model meta-llama/Meta-Llama-3-70B-Instruct --max-length 4096

prints the tensor-parallel size and the number of copies on the first line, then each copy's devices (the values
for its ``CUDA_VISIBLE_DEVICES``, taken from the job's own ``CUDA_VISIBLE_DEVICES`` when SLURM set one; an empty
line on a machine without GPUs). A model that does not fit exits 2 with the placement's reason and fix.

The recipe's extra server flags (``VLLM_ARGS``, read from the environment or ``--vllm-args``) are the servers' own, so
the layout is planned with them: ``--tensor-parallel-size``/``-tp``, ``--dtype``, ``--gpu-memory-utilization`` and
``--max-model-len`` (given last on the server's command line, they win there too) and the engine arguments the plan
reads (``--max-num-batched-tokens``, ``--max-num-seqs``, ``--kv-cache-dtype``, ``--quantization``); other flags do not
change the layout and are left to the server.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys

from encore.scale.hardware import Gpus


PLANNED = {"tensor_parallel_size": str, "tp": str, "dtype": str, "gpu_memory_utilization": float,
           "max_model_len": int, "max_num_batched_tokens": int, "max_num_seqs": int, "kv_cache_dtype": str,
           "quantization": str}
ENGINE = ("max_num_batched_tokens", "max_num_seqs", "kv_cache_dtype", "quantization")


def vllm_args(text: str) -> dict:
    """The flags of ``VLLM_ARGS`` that change the layout, by vLLM's argument name (``--max-num-seqs 64`` and
    ``--max_num_seqs=64`` alike; the last one given wins, as on vLLM's command line). A value that is not what vLLM
    takes is refused with the flag."""
    words, out = shlex.split(text or ""), {}
    for i, w in enumerate(words):
        if not w.startswith("-"):
            continue
        name, eq, value = w.lstrip("-").partition("=")
        name = name.replace("-", "_")
        if name not in PLANNED:
            continue
        if not eq:
            value = words[i + 1] if i + 1 < len(words) else ""
        try:
            out[name] = PLANNED[name](value)
        except ValueError:
            raise ValueError(f"VLLM_ARGS: {w} {'' if eq else value!r}: not a valid value for --"
                             f"{name.replace('_', '-')}") from None
    if "tp" in out:
        out["tensor_parallel_size"] = out.pop("tp")
    return out


def layout(model: str, max_length: int, tp: str = "auto", copies: str = "auto", dtype: str = "auto",
           gpu_memory_utilization: float = 0.90, gpus: Gpus | None = None,
           arch: dict | None = None, extra: str = "") -> tuple[int, list[list[str]]]:
    """``(tensor parallel size, devices of each copy)`` for ``model`` on ``gpus`` (default: the GPUs this process
    sees). An explicit ``tp`` is checked as rater=vllm checks it; ``copies`` (default ``auto``: every GPU a block
    fills) may ask for fewer, or, on the CPU build, for several (each a whole server on the same cores: a test
    setting). ``arch``: architecture numbers for when the model's config cannot be read (as ``rater.arch``).
    ``extra``: the servers' extra flags (``VLLM_ARGS``); those that change the layout win over the arguments."""
    from encore.rating.vllm import VLLMRater
    from encore.scale.arch import ArchError
    from encore.scale.hardware import detect
    from encore.scale.placement import DoesNotFit

    if str(copies) != "auto" and not str(copies).isdigit():
        raise ValueError(f"COPIES={copies}: a whole number of servers, or auto (as many as the GPUs hold)")
    gpus = gpus if gpus is not None else detect()
    flags = vllm_args(extra)
    tp = flags.get("tensor_parallel_size", tp)
    max_length = flags["max_model_len"] - 1 if "max_model_len" in flags else max_length
    rater = VLLMRater(model=model, max_length=max_length, tensor_parallel_size=tp, dtype=flags.get("dtype", dtype),
                      gpu_memory_utilization=flags.get("gpu_memory_utilization", gpu_memory_utilization), arch=arch,
                      engine_kwargs={k: flags[k] for k in ENGINE if k in flags} or None)
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
    ap.add_argument("--vllm-args", default=os.environ.get("VLLM_ARGS", ""),
                    help="the servers' extra flags (default: $VLLM_ARGS); those that change the layout are planned")
    a = ap.parse_args(argv)
    from encore.scale.placement import DoesNotFit

    try:
        t, blocks = layout(a.model, a.max_length, a.tp, a.copies, a.dtype, a.gpu_memory_utilization,
                           extra=a.vllm_args)
    except (DoesNotFit, ValueError) as e:
        print(e, file=sys.stderr)
        return 2
    print(t, len(blocks))
    for block in blocks:
        print(",".join(block))
    return 0


if __name__ == "__main__":
    sys.exit(main())
