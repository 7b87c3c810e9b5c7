"""One rank of the data-parallel fine-tuning test: started twice by torchrun with ACCELERATE_USE_CPU=true (gloo).
Trains the tiny decoder exactly as tests/test_distributed.py's single-process reference, with half the per-process
batch, into the cache directory given as the first argument."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from test_distributed import TRAIN, setup  # noqa: E402

from encore.finetune import Finetune  # noqa: E402

if __name__ == "__main__":
    enc, pairs, y = setup()
    Finetune(**{**TRAIN, "batch_size": TRAIN["batch_size"] // 2}).train_model(enc, pairs, y, "mse", Path(sys.argv[1]), "k")
