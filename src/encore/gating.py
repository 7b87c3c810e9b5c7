"""ArmoRM-style gating baseline: a small MLP reads the prompt embedding and outputs softmax weights over the K frozen
heads; the composed reward is β · Σ_k g_k(x) ψ_k(x, y), trained with the Bradley–Terry loss on preference pairs
(β a learned scale, as ArmoRM's). Pure torch on arrays, no I/O.

The entropy of the gate, H(g(x)) = -Σ_k g_k log g_k (max log K), is reported: near 0 means the gate collapsed onto
one head.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from encore.rm.model import bt_pair_loss


class GatingNet(nn.Module):
    def __init__(self, dim: int, num_heads: int, hidden: int = 64, dropout: float = 0.1):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, num_heads))
        self.log_beta = nn.Parameter(torch.tensor(float(np.log(10.0))))  # reward scale; head scores live in ~[0, 1]

    def forward(self, prompt_emb: torch.Tensor) -> torch.Tensor:
        """(B, D) -> (B, K) weights on the simplex."""
        return torch.softmax(self.mlp(prompt_emb), dim=-1)

    def reward(self, prompt_emb: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """prompt (B, D), head scores (B, 2, K) -> (B, 2) composed rewards β Σ_k g_k ψ_k."""
        return self.log_beta.exp() * torch.einsum("bk,bsk->bs", self(prompt_emb), scores)


@dataclass
class GatingFit:
    net: GatingNet
    mean: np.ndarray  # (D,) standardisation of the prompt embeddings, from the training pairs
    std: np.ndarray
    losses: list[float]

    @torch.no_grad()
    def weights(self, prompt_emb: np.ndarray) -> np.ndarray:
        self.net.eval()
        return self.net(torch.as_tensor((prompt_emb - self.mean) / self.std, dtype=torch.float32)).double().numpy()

    def rewards(self, prompt_emb: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """(M, 2) composed rewards Σ_k g_k ψ_k (β dropped: it does not change a comparison)."""
        return np.einsum("mk,msk->ms", self.weights(prompt_emb), scores)


def fit_gating(prompt_emb: np.ndarray, scores: np.ndarray, hidden: int = 64, epochs: int = 300, lr: float = 3e-3,
               weight_decay: float = 1e-2, dropout: float = 0.1, batch_size: int = 256, seed: int = 0) -> GatingFit:
    """Train the gate on (N, D) prompt embeddings and (N, 2, K) frozen head scores (chosen first) with mean
    -log σ(r_chosen - r_rejected); AdamW, minibatches, seeded. Pairs with a missing head score are dropped."""
    ok = np.isfinite(scores).all(axis=(1, 2))
    x, s = prompt_emb[ok], scores[ok]
    if len(x) < 2:
        raise ValueError("gating: fewer than 2 training pairs with all head scores present")
    mean, std = x.mean(0), x.std(0) + 1e-6
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = GatingNet(x.shape[1], s.shape[-1], hidden, dropout)
    X = torch.as_tensor((x - mean) / std, dtype=torch.float32)
    S = torch.as_tensor(s, dtype=torch.float32)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    losses = []
    net.train()
    for _ in range(epochs):
        perm = torch.randperm(len(X), generator=g)
        total = 0.0
        for i in range(0, len(X), batch_size):
            b = perm[i: i + batch_size]
            r = net.reward(X[b], S[b])  # (B, 2)
            loss = bt_pair_loss(r[:, 0], r[:, 1])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(b)
        losses.append(total / len(X))
    return GatingFit(net, mean, std, losses)


def gate_entropy(weights: np.ndarray) -> np.ndarray:
    """(M, K) -> (M,) H(g) = -Σ_k g_k log g_k in nats."""
    w = np.clip(weights, 1e-12, 1.0)
    return -(w * np.log(w)).sum(-1)
