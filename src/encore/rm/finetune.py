"""Multi-head fine-tuning (``train=finetune``): the backbone and K heads trained together with the masked MSE on the
rule ratings, as in the paper (Llama-3.1-8B from Skywork-Reward, 1 epoch, lr 2e-5); and the single-head
Bradley–Terry reward model (``method=bt_single_head``) through the same loop with the BT loss.

Runs under ``accelerate``: bf16 on a GPU, gradient accumulation, DDP / FSDP / DeepSpeed from ``accelerate launch``
(each process takes its slice of every global batch). Optional LoRA (peft; merged before saving) and gradient
checkpointing. The optimiser state is checkpointed every ``save_every`` optimiser steps, so a killed run resumes
where it stopped; the trained model and its scores are cached by content hash, so evaluation and τ sweeps reuse them.
"""

from __future__ import annotations

import logging
import os
import shutil
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from accelerate import PartialState

from encore.rm import checkpoint
from encore.cache.artifacts import array_hash, cached_arrays, content_hash, expect, filesystem_errors, read_json
from encore.cache.cache_only import refuse_compute
from encore.rm.backbone import Encoder
from encore.rm.batches import MicroBatches, batch_split
from encore.data.pairs import fingerprint
from encore.rm.splits import validation_split
from encore.scale.distributed import (OPTIMS, check_combination, fill_deepspeed_config, launch_state, make_optimizer,
                                      runtime_strategy)
from encore.scale.hardware import Gpus
from encore.scale.loading import target_gpus
from encore.scale.memory import SHARDED
from encore.scale.placement import DoesNotFit, TrainSetup, place_training
from encore.rm.model import META, MultiHeadRM, bt_pair_loss, masked_mse, reusable, score_ids, weights_id

log = logging.getLogger(__name__)
# batch_size is only how the global batch is cut into micro-steps (memory): the same model up to rounding
_NOT_IN_KEY = {"save_every", "keep_checkpoints", "score_batch_size", "progress", "batch_size"}


@dataclass
class Finetune:
    lr: float = 2e-5
    epochs: float = 1.0
    global_batch: int = 8  # pairs per optimiser step over all processes (conf/train/finetune.yaml: the paper's 32)
    batch_size: int = 8  # the most pairs one process takes per micro-step (memory); accumulation makes up the rest
    max_steps: int | None = None  # optimiser steps; overrides epochs when set
    weight_decay: float = 0.0
    warmup_ratio: float = 0.03
    max_grad_norm: float = 1.0
    lora_r: int = 0  # 0: full fine-tuning
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_targets: Any = "all-linear"
    gradient_checkpointing: bool = False
    mixed_precision: str = "auto"  # bf16 on a GPU that has it, else no
    param_dtype: str = "float32"  # float32: fp32 master weights (bf16 autocast on GPU); bfloat16: needs adamw_8bit
    optim: str = "adamw"  # adamw (torch) or adamw_8bit (torchao, stochastic rounding for bf16 weights)
    head_bias: Any = "auto"  # auto: none on decoders (folds exactly into a sequence-classification score layer)
    val_frac: float = 0.05
    seed: int = 0
    save_every: int = 200
    keep_checkpoints: int = 1  # verified checkpoints kept; 2: a damaged newest one resumes from the one before
    score_batch_size: int = 16
    progress: bool = True

    def __post_init__(self) -> None:
        if self.lora_targets is not None and not isinstance(self.lora_targets, str):
            self.lora_targets = list(self.lora_targets)  # configs hand in a ListConfig
        for name in ("lr", "epochs", "global_batch", "batch_size", "keep_checkpoints"):
            if not getattr(self, name) > 0:
                raise ValueError(f"train.{name}={getattr(self, name)}: must be positive")
        if not 0 <= self.val_frac < 1:
            raise ValueError(f"train.val_frac={self.val_frac}: must be in [0, 1)")
        if self.mixed_precision not in ("auto", "no", "bf16", "fp16"):
            raise ValueError(f"train.mixed_precision={self.mixed_precision!r}; use auto, no, bf16 or fp16")
        if self.param_dtype not in ("float32", "bfloat16"):
            raise ValueError(f"train.param_dtype={self.param_dtype!r}; use float32 or bfloat16")
        if self.optim not in OPTIMS:
            raise ValueError(f"train.optim={self.optim!r}; use one of {OPTIMS}")
        world = int(os.environ.get("WORLD_SIZE") or 1)
        if world > 1:  # a rank of a launch: a global batch the ranks cannot share is refused before anything loads
            self.split(world)
        if self.param_dtype == "bfloat16" and self.optim == "adamw" and not self.lora_r:
            raise ValueError("train.param_dtype=bfloat16 with train.optim=adamw: AdamW updates of lr 2e-5 on bf16 "
                             "weights mostly round away; use train.optim=adamw_8bit (stochastic rounding) or "
                             "train.param_dtype=float32")

    def split(self, processes: int = 1) -> tuple[int, int]:
        """(pairs per process per micro-step, accumulation steps) on ``processes`` (:func:`batch_split`)."""
        return batch_split(self.global_batch, self.batch_size, processes)

    @property
    def grad_accum(self) -> int:
        """Accumulation steps of one process (:meth:`split`)."""
        return self.split(1)[1]

    def identity(self) -> dict[str, Any]:
        return {"kind": "finetune", "val_split": "by_prompt",
                **{k: v for k, v in asdict(self).items() if k not in _NOT_IN_KEY}}

    def placement(self, encoder: Encoder, gpus: Any, strategy: str = "single", processes: int = 1) -> Any:
        """Per-process memory of this run under ``strategy`` on ``gpus`` (see :mod:`encore.scale.memory`), with a fix
        when it does not fit. Checked by every rank before the backbone is loaded."""
        check_combination(strategy, self.lora_r, self.optim)
        micro, accum = self.split(processes)
        setup = TrainSetup(param_dtype=self.param_dtype, optim=self.optim, strategy=strategy, processes=processes,
                           batch_size=micro, grad_accum=accum, max_length=encoder.max_length,
                           gradient_checkpointing=self.gradient_checkpointing, lora_r=self.lora_r)
        return place_training(encoder.arch_info(), setup, gpus)

    # ------------------------------------------------------------------ what the pipeline calls
    def fit_score(self, train: pd.DataFrame, ratings: np.ndarray, eval_pairs: pd.DataFrame, encoder: Encoder,
                  cache_dir: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Train (or reuse) the K-head RM on ratings (N, 2, K) and score train and eval pairs: (N|M, 2, K)."""
        rh = array_hash(ratings)
        # Cache-key audit (fine-tuned model, its head scores): encoder identity, train fingerprint, the ratings'
        # values, every Finetune field but save_every / score_batch_size / progress / batch_size, the objective; the
        # global batch (pairs per optimiser step) is in it, not how many processes or micro-steps made it up (the
        # same update up to rounding, encore.rm.batches). Not: the accelerate strategy (DDP / FSDP give the same
        # update up to rounding), a machine's choice for mixed_precision=auto. Scores add the eval fingerprint and the
        # model's verified identity (weights_id: its checksum list's digest). The model directory is reused only
        # when every file has its recorded size and SHA-256 (reusable).
        key = content_hash(encoder.identity(), fingerprint(train), rh, self.identity(), "mse")
        model_dir = self.train_model(encoder, train, ratings, "mse", Path(cache_dir), key)
        key = content_hash(key, weights_id(model_dir))  # scores of a damaged model, retrained since, are never read

        def compute() -> dict[str, np.ndarray]:
            rm = self._load(model_dir, encoder)  # every process of a launch is here: each scores its share
            tr, ev = self._score_pairs(rm, encoder, train, True), self._score_pairs(rm, encoder, eval_pairs, True)
            val = np.asarray(read_json(model_dir / META)["val_pairs"], dtype=int)
            err = (tr[val] - ratings[val]) ** 2 if len(val) else np.full((1, 2, ratings.shape[-1]), np.nan)
            held_out = np.full_like(tr, np.nan)  # the held-out split's scores (never trained on), NaN elsewhere
            held_out[val] = tr[val]
            with warnings.catch_warnings():  # a head with no rated validation response gets NaN, said in heads.csv
                warnings.simplefilter("ignore", RuntimeWarning)
                return {"eval_scores": ev, "train_scores": tr, "held_out_scores": held_out,
                        "val_mse": np.nanmean(err, axis=(0, 1))}

        k = ratings.shape[-1]
        arrays, hit = cached_arrays(Path(cache_dir) / "head_scores" / f"{content_hash(key, fingerprint(eval_pairs))}.npz",
                                    compute, lambda a: expect(a, eval_scores=(len(eval_pairs), 2, k),
                                                              train_scores=(len(train), 2, k))
                                    or expect(a, finite=False, val_mse=(k,), held_out_scores=(len(train), 2, k)))
        n_held = int(np.isfinite(arrays["held_out_scores"]).all(axis=(1, 2)).sum())
        basis = (f"the fine-tune's held-out split (train.val_frac={self.val_frac}: {n_held} of {len(train)} training "
                 "pairs, never trained on)")
        return arrays, {"model_dir": str(model_dir), "head_scores_cached": hit, "head_scores_key": key,
                        "held_out_basis": basis}

    def preference_rewards(self, train: pd.DataFrame, eval_pairs: pd.DataFrame, encoder: Encoder,
                           cache_dir: str | Path) -> np.ndarray:
        """Single-head BT reward model: the same backbone, one head, -log σ(r_c - r_r); (M, 2) eval rewards."""
        key = content_hash(encoder.identity(), fingerprint(train), self.identity(), "bt")
        model_dir = self.train_model(encoder, train, None, "bt", Path(cache_dir), key)
        key = content_hash(key, weights_id(model_dir))
        compute = lambda: {"rewards": self._score_pairs(self._load(model_dir, encoder), encoder, eval_pairs)[..., 0]}  # noqa: E731
        arrays, _ = cached_arrays(Path(cache_dir) / "bt_scores" / f"{content_hash(key, fingerprint(eval_pairs))}.npz",
                                  compute, lambda a: expect(a, rewards=(len(eval_pairs), 2)))
        return arrays["rewards"]

    def prompt_embeddings(self, pairs: pd.DataFrame, encoder: Encoder, cache_dir: str | Path,
                          report: dict[str, Any]) -> np.ndarray:
        """(N, D) prompt representations for a gate from the *fine-tuned* backbone (the model behind ``report``),
        pooled as the heads pool, on the prompt as it opens the reward model's input; cached by that model's key."""
        model_dir = Path(report["model_dir"])

        def compute() -> dict[str, np.ndarray]:
            ids, _ = encoder.token_ids(encoder.prompt_texts(list(pairs["prompt"])))
            return {"emb": score_ids(self._load(model_dir, encoder), encoder.tok, ids, self.score_batch_size,
                                     pooled=True)}

        key = content_hash(report["head_scores_key"], fingerprint(pairs), "prompts")
        return cached_arrays(Path(cache_dir) / "prompt_states" / f"{key}.npz", compute,
                             lambda a: expect(a, emb=(len(pairs), None)))[0]["emb"]

    def load_rm(self, arrays: dict[str, np.ndarray], report: dict[str, Any], encoder: Encoder) -> MultiHeadRM:
        """The trained model behind ``fit_score``'s ``report``."""
        return self._load(Path(report["model_dir"]), encoder)

    # ------------------------------------------------------------------ training
    def train_model(self, encoder: Encoder, pairs: pd.DataFrame, targets: np.ndarray | None, objective: str,
                    cache_dir: Path, key: str) -> Path:
        """Train once per key into ``cache_dir/models/<key>`` (reused when present) and return that directory."""
        from accelerate import Accelerator
        from accelerate.utils import set_seed
        from tqdm.auto import tqdm

        model_dir, ckpt = cache_dir / "models" / key, cache_dir / "checkpoints" / key
        if (model_dir / META).exists() and reusable(model_dir):  # checksums verified; a damaged one is retrained
            return model_dir
        refuse_compute(f"the fine-tuned reward model models/{key}")
        mp = self.mixed_precision
        if mp == "auto":
            mp = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
        mb, accum = self.split(launch_state().num_processes)  # refused before anything loads
        acc = Accelerator(mixed_precision=mp, gradient_accumulation_steps=accum)
        strategy, n_proc = runtime_strategy(acc)
        place = self.placement(encoder, Gpus(0, 0, "CPU") if acc.device.type == "cpu" else target_gpus("cuda"),
                               strategy, n_proc)
        if not place.fits:  # every rank stops here, before a weight is read
            raise DoesNotFit(f"fine-tuning {encoder.name_or_path}: {place.summary()}")
        log.info("fine-tuning %s: %s; global batch %d pairs = %d process(es) x %d pairs x %d accumulation steps",
                 encoder.name_or_path, place.summary(), self.global_batch, n_proc, mb, accum)
        set_seed(self.seed)
        tok, k = encoder.tok, 1 if objective == "bt" else targets.shape[-1]
        ids = encoder.tokenize(encoder.pair_texts(pairs), padding=False)["input_ids"]  # 2N: chosen, rejected, ...
        # held-out pairs for the per-head validation MSE: whole prompts, so no conversation straddles the split
        val, tr = validation_split(pairs["prompt"], self.val_frac if objective == "mse" else 0.0, self.seed)
        rm = self._new_rm(encoder, k)
        opt = make_optimizer([p for p in rm.parameters() if p.requires_grad], self.optim, self.lr, self.weight_decay)
        weights = (~np.isnan(targets)).sum(axis=(1, 2)) if targets is not None else np.ones(len(pairs))
        plan = MicroBatches(tr, weights, mb, acc.num_processes, accum, self.seed, self.epochs, self.max_steps)
        micro, n_opt = plan.micro_steps, plan.optimiser_steps
        from transformers import get_linear_schedule_with_warmup

        sched = get_linear_schedule_with_warmup(opt, int(self.warmup_ratio * n_opt), n_opt)
        fill_deepspeed_config(acc, mb, self.max_grad_norm, rm.heads.in_features)  # no DataLoader here
        rm, opt = acc.prepare(rm, opt)  # the scheduler is stepped by hand once per optimiser step
        acc.register_for_checkpointing(sched)
        start, logs = 0, []
        resume = checkpoint.resume(acc, ckpt)  # verified against the checksums written at save time
        if resume is not None:  # a killed run continues from its newest intact checkpoint
            acc.load_state(str(resume[0]))
            start, logs = resume[1]["micro_step"], resume[1]["log"]
            log.info("resuming %s at micro-step %d of %d", key, start, micro)
        y = torch.as_tensor(targets, dtype=torch.float32) if targets is not None else None
        rm.train()
        bar = tqdm(range(start, micro), desc=f"train {objective}", disable=not (self.progress and acc.is_main_process))
        for m in bar:
            idx, factor = plan.part(m, acc.process_index)  # this process's slice of the global batch
            batch = tok.pad({"input_ids": [ids[2 * i + s] for i in idx for s in (0, 1)]}, return_tensors="pt").to(acc.device)
            if plan.is_boundary(m):  # also a short last window: accelerate's counter is set to step after it
                acc.step = accum - 1
            with acc.accumulate(rm):
                out = rm(batch["input_ids"], batch["attention_mask"]).view(len(idx), 2, k)  # (B, 2, K)
                mean = masked_mse(out, y[idx].to(out.device)) if y is not None else bt_pair_loss(out[:, 0, 0], out[:, 1, 0])
                summed = mean * float(weights[idx].sum()) * (factor > 0)  # S_r (see encore.rm.batches)
                acc.backward(summed * factor)
                if acc.sync_gradients and self.max_grad_norm:
                    acc.clip_grad_norm_(rm.parameters(), self.max_grad_norm)
                opt.step()  # a no-op between accumulation boundaries
                opt.zero_grad()
            if acc.sync_gradients:
                sched.step()
            n_batch = max(float(weights[plan.chunk(m)].sum()), 1.0)
            mean_loss = float(acc.reduce(summed.detach(), reduction="sum")) / n_batch  # the global batch's mean
            logs.append({"micro_step": m, "epoch": plan.epoch(m), "loss": mean_loss,
                         "lr": float(sched.get_last_lr()[0])})  # torchao keeps lr as a 0-d tensor
            bar.set_postfix(loss=f"{mean_loss:.4f}")
            if acc.sync_gradients and (m + 1) // accum % self.save_every == 0 and m + 1 < micro:
                checkpoint.save(acc, ckpt, m + 1, logs, self.keep_checkpoints)
        acc.wait_for_everyone()
        state = acc.get_state_dict(rm) if strategy in SHARDED else None  # collective: gathers the shards
        if acc.is_main_process:
            with filesystem_errors(model_dir):  # a full disk says so, naming the path
                acc.unwrap_model(rm).save_pretrained(  # the training log inside: listed in checksums.json too
                    model_dir, tok, state_dict=state, files={"train_log.csv": pd.DataFrame(logs).to_csv(
                        index=False).encode("utf-8")}, objective=objective, key=key, val_pairs=val.tolist(),
                    train=self.identity(), encoder=encoder.identity(), strategy=strategy, processes=n_proc)
            shutil.rmtree(ckpt, ignore_errors=True)
        PartialState().wait_for_everyone()
        return model_dir

    def _new_rm(self, encoder: Encoder, k: int) -> MultiHeadRM:
        backbone = encoder.new_model(dtype=getattr(torch, self.param_dtype))
        pooling = encoder.resolved_pooling()
        if getattr(backbone, "pooler", None) is not None:  # BERT's pooler is unused by our pooling: keep it frozen
            backbone.pooler.requires_grad_(False)
        if self.gradient_checkpointing:
            backbone.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            backbone.config.use_cache = False
        if self.lora_r > 0:
            from peft import LoraConfig, get_peft_model

            backbone = get_peft_model(backbone, LoraConfig(r=self.lora_r, lora_alpha=self.lora_alpha,
                                                           lora_dropout=self.lora_dropout,
                                                           target_modules=self.lora_targets))
        bias = pooling != "last" if self.head_bias == "auto" else bool(self.head_bias)
        torch.manual_seed(self.seed)
        return MultiHeadRM(backbone, k, pooling, bias)  # new heads in fp32, also on a bf16 backbone

    def _load(self, model_dir: Path, encoder: Encoder) -> MultiHeadRM:
        from encore.rm.backbone import pick_device, pick_dtype

        dev = pick_device(encoder.device)
        return MultiHeadRM.load(model_dir, dtype=pick_dtype(encoder.dtype, dev)).to(dev)

    def _score_pairs(self, rm: MultiHeadRM, encoder: Encoder, pairs: pd.DataFrame, shared: bool = False) -> np.ndarray:
        """(N, 2, K) head scores of the pairs. ``shared``: every process of the launch calls this together; process
        r of n scores pairs r, r + n, ... and all receive the whole array (``gather_object``), so n processes score
        each pair once instead of n times. One process: all pairs, the same numbers."""
        ids = encoder.tokenize(encoder.pair_texts(pairs), padding=False)["input_ids"]
        state = PartialState()
        n = state.num_processes if shared else 1
        mine = np.arange(len(pairs))[state.process_index % n:: n]
        part = score_ids(rm, encoder.tok, [ids[2 * i + s] for i in mine for s in (0, 1)], self.score_batch_size)
        if n == 1:
            return part.reshape(len(pairs), 2, rm.num_heads)
        from accelerate.utils import gather_object

        out = np.empty((len(pairs), 2, rm.num_heads))
        for idx, scores in gather_object([(mine, part.reshape(len(mine), 2, rm.num_heads))]):
            out[idx] = scores
        return out

