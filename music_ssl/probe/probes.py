"""Probes: many linear/MLP probes as one stacked computation, and the plain single-probe module it must equal.

:class:`StackedProbes` holds P probes of one architecture (same hidden width, per-layer or weighted-sum input)
as stacked weights — (P, C, H) and (P, H, K) — and runs them with ``torch.bmm``. Per-probe learning rate, L2,
dropout, batch size, input layer and standardisation are (P,)-tensors, so a whole grid takes one step per
kernel. :class:`StackedAdam` is Adam (torch's formula, L2 added to the gradient like ``weight_decay``) with
per-probe hyper-parameters. :class:`SingleProbe` is the textbook ``nn.Linear`` module used by the sequential
reference; both draw their initial weights and dropout masks from ``randomness`` so they are comparable.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import randomness as rnd
from .protocols import WEIGHTED_SUM


def _init_uniform(keys: torch.Tensor, purpose: int, shape: tuple, fan_in: int) -> torch.Tensor:
    """nn.Linear's default init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), from each probe's stream: (P, *shape)."""
    bound = 1.0 / math.sqrt(fan_in)
    return (2 * rnd.uniform(rnd.stream_keys(keys, 0, purpose), shape) - 1) * bound


def dropout_mask(keys: torch.Tensor, step: int, purpose: int, shape: tuple, rate: torch.Tensor) -> torch.Tensor:
    """Inverted-dropout multipliers (P, *shape): 0 with probability ``rate`` (P,), else 1 / (1 - rate)."""
    u = rnd.uniform(rnd.stream_keys(keys, step, purpose), shape)
    rate = rate.view(-1, *([1] * len(shape)))
    return (u >= rate).float() / (1 - rate)


class StackedProbes(nn.Module):
    """P probes sharing one architecture.

    Args:
        keys: (P,) int64 probe keys (``randomness.probe_key``). layers: (P,) int64 hidden-state index, or all
            ``WEIGHTED_SUM`` for a weighted-sum group. num_states: S. dim: C. hidden: H (0 = linear).
        num_outputs: K. dropout: (P,) rates. standardize: (P,) bool.
    """

    def __init__(self, keys, layers, num_states, dim, hidden, num_outputs, dropout, standardize):
        super().__init__()
        self.hidden, self.weighted = hidden, bool((layers == WEIGHTED_SUM).all())
        for name, value in (("keys", keys), ("layers", layers), ("dropout", dropout),
                            ("standardize", standardize)):
            self.register_buffer(name, value)
        width = hidden or dim
        if hidden:
            self.w_hidden = nn.Parameter(_init_uniform(keys, rnd.INIT_HIDDEN, (dim, hidden), dim))
            self.b_hidden = nn.Parameter(_init_uniform(keys, rnd.INIT_BIAS_HIDDEN, (1, hidden), dim))
        self.w_out = nn.Parameter(_init_uniform(keys, rnd.INIT_OUTPUT, (width, num_outputs), width))
        self.b_out = nn.Parameter(_init_uniform(keys, rnd.INIT_BIAS_OUTPUT, (1, num_outputs), width))
        if self.weighted:
            self.mix = nn.Parameter(torch.zeros(len(keys), num_states, device=keys.device))

    @property
    def num_probes(self) -> int:
        return self.keys.shape[0]

    def inputs(self, x: torch.Tensor, index: torch.Tensor, mean: torch.Tensor, inv_std: torch.Tensor):
        """Gather each probe's input rows.

        Args:
            x: (S, N, C) split features; index: (P, B) item indices; mean, inv_std: (S, C) train statistics.
        Returns:
            (P, B, C) per-layer inputs, or (S, P, B, C) for a weighted-sum group; standardised where asked.
        """
        on = self.standardize.float()
        if self.weighted:
            rows = x[:, index]  # (S, P, B, C)
            on = on.view(1, -1, 1, 1)
            mean, inv_std = mean[:, None, None], inv_std[:, None, None]  # (S, 1, 1, C)
        else:
            rows = x[self.layers.unsqueeze(1), index]  # (P, B, C)
            on = on.view(-1, 1, 1)
            mean, inv_std = mean[self.layers].unsqueeze(1), inv_std[self.layers].unsqueeze(1)  # (P, 1, C)
        return (rows - mean * on) * (inv_std * on + (1 - on))

    def forward(self, inputs: torch.Tensor, step=None) -> torch.Tensor:
        """inputs: from :meth:`inputs`; step: training step (dropout on) or None (eval). Returns (P, B, K)."""
        if self.weighted:
            inputs = torch.einsum("ps,spbc->pbc", self.mix.softmax(-1), inputs)
        P, B, C = inputs.shape
        if step is not None:
            inputs = inputs * dropout_mask(self.keys, step, rnd.DROPOUT_INPUT, (B, C), self.dropout)
        if self.hidden:
            inputs = F.relu(torch.baddbmm(self.b_hidden, inputs, self.w_hidden))  # (P, B, H)
            if step is not None:
                inputs = inputs * dropout_mask(self.keys, step, rnd.DROPOUT_HIDDEN, (B, self.hidden), self.dropout)
        return torch.baddbmm(self.b_out, inputs, self.w_out)  # (P, B, K)

    def subset(self, keep: torch.Tensor) -> None:
        """Keep only probes ``keep`` (bool (P,)), in place (parameters and buffers)."""
        for name, param in list(self.named_parameters()):
            setattr(self, name, nn.Parameter(param.data[keep]))
        for name, buf in list(self.named_buffers()):
            setattr(self, name, buf[keep])


class StackedAdam:
    """Adam over stacked parameters (leading dim P) with per-probe ``lr`` and ``l2`` (P,) tensors.

    Same update as ``torch.optim.Adam(weight_decay=l2)``: g += l2 * w; m, v moving averages; w -= lr / bc1 *
    m / (sqrt(v) / sqrt(bc2) + eps).
    """

    def __init__(self, params: list, lr: torch.Tensor, l2: torch.Tensor, betas=(0.9, 0.999), eps=1e-8):
        self.params, self.lr, self.l2, self.betas, self.eps = list(params), lr, l2, betas, eps
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.t = 0

    def _per_probe(self, value, like):
        return value.view(-1, *([1] * (like.dim() - 1)))

    @torch.no_grad()
    def step(self) -> None:
        self.t += 1
        b1, b2 = self.betas
        bc1, bc2_sqrt = 1 - b1 ** self.t, math.sqrt(1 - b2 ** self.t)
        for p, m, v in zip(self.params, self.m, self.v):
            grad = p.grad + self._per_probe(self.l2, p) * p
            m.lerp_(grad, 1 - b1)
            v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
            denom = (v.sqrt() / bc2_sqrt).add_(self.eps)
            p.sub_(self._per_probe(self.lr, p) / bc1 * m / denom)
            p.grad = None

    def subset(self, keep: torch.Tensor, params: list) -> None:
        """Follow :meth:`StackedProbes.subset`: keep probes ``keep`` and re-bind to the new parameters."""
        self.params = list(params)
        self.m = [m[keep] for m in self.m]
        self.v = [v[keep] for v in self.v]
        self.lr, self.l2 = self.lr[keep], self.l2[keep]


class SingleProbe(nn.Module):
    """One probe as a plain module (``nn.Linear``, ``F.dropout``-style masks): the sequential reference.

    Args:
        key: the probe's key; layer: hidden-state index or ``WEIGHTED_SUM``; others as :class:`StackedProbes`.
    """

    def __init__(self, key, layer, num_states, dim, hidden, num_outputs, dropout, device):
        super().__init__()
        self.key = torch.tensor([key], dtype=torch.int64, device=device)
        self.layer, self.hidden, self.rate = layer, hidden, torch.tensor([dropout], device=device)
        width = hidden or dim
        if hidden:
            self.hidden_layer = nn.Linear(dim, hidden, device=device)
            self._load(self.hidden_layer, rnd.INIT_HIDDEN, rnd.INIT_BIAS_HIDDEN, dim, hidden)
        self.output_layer = nn.Linear(width, num_outputs, device=device)
        self._load(self.output_layer, rnd.INIT_OUTPUT, rnd.INIT_BIAS_OUTPUT, width, num_outputs)
        if layer == WEIGHTED_SUM:
            self.mix = nn.Parameter(torch.zeros(num_states, device=device))

    @torch.no_grad()
    def _load(self, linear, weight_purpose, bias_purpose, fan_in, fan_out):
        linear.weight.copy_(_init_uniform(self.key, weight_purpose, (fan_in, fan_out), fan_in)[0].T)
        linear.bias.copy_(_init_uniform(self.key, bias_purpose, (1, fan_out), fan_in)[0, 0])

    def forward(self, x: torch.Tensor, step=None) -> torch.Tensor:
        """x: (B, C) or (S, B, C) for a weighted-sum probe -> (B, K)."""
        if self.layer == WEIGHTED_SUM:
            x = torch.einsum("s,sbc->bc", self.mix.softmax(0), x)
        if step is not None:
            x = x * dropout_mask(self.key, step, rnd.DROPOUT_INPUT, tuple(x.shape), self.rate)[0]
        if self.hidden:
            x = F.relu(self.hidden_layer(x))
            if step is not None:
                x = x * dropout_mask(self.key, step, rnd.DROPOUT_HIDDEN, tuple(x.shape), self.rate)[0]
        return self.output_layer(x)
