"""Rate the training pairs under every rule (cached, resumable)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from _runner import quiet_libraries, run_dir
from encore.pipeline import run_rate


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    quiet_libraries()
    out = run_dir()
    run_rate(cfg, out)
    print(f"run dir: {out}")


if __name__ == "__main__":
    main()
