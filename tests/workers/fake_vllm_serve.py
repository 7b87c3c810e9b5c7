"""Stands in for the `vllm serve` command in the SLURM recipe test: parses the flags the recipe passes, records
them with its CUDA_VISIBLE_DEVICES (in --record's folder, one file per port), and after a start-up delay serves the
tiny test model on 127.0.0.1:--port (tests/llm_server.py) until SIGTERM, then records how many requests it served."""

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llm_server import LLMServer  # noqa: E402

from encore.rating.hf import HFRater  # noqa: E402
from encore.rm.tiny import tiny_causal_config  # noqa: E402

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("command")
    for flag in ("--model", "--host", "--port", "--tensor-parallel-size", "--logprobs-mode", "--max-logprobs",
                 "--generation-config", "--max-model-len"):
        ap.add_argument(flag)
    ap.add_argument("--enable-prefix-caching", action="store_true")
    ap.add_argument("--record", default=None)
    args = ap.parse_args()
    record = Path(args.record).with_name(f"serve-args-{args.port}.json") if args.record else None
    if record:
        record.write_text(json.dumps(vars(args) | {"cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    time.sleep(2)  # the recipe must wait for /health, not assume the server is up
    rater = HFRater(model="tiny", tokenizer="tiny-bpe", config=tiny_causal_config("llama", hidden=32, layers=2),
                    device="cpu", dtype="float32")
    with LLMServer(rater, port=int(args.port), logprobs_mode=args.logprobs_mode) as server:
        try:
            while True:  # until the recipe stops it (SIGTERM)
                time.sleep(3600)
        finally:
            if record:
                record.with_suffix(".requests").write_text(str(server.requests))
