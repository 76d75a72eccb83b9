"""Probes: many linear/MLP probes as one stacked computation, and the plain single-probe module it must equal.

:class:`StackedProbes` holds P probes of one architecture (same hidden width, per-layer or weighted-sum input)
as stacked weights — (P, C, H) and (P, H, K) — and runs them with ``torch.baddbmm``. Per-probe input layer,
dropout rate and random streams are (P,) buffers, so a whole grid takes one kernel per operation.
:class:`StackedAdam` is Adam (torch's formula, L2 added to the gradient like ``weight_decay``) with per-probe
learning rate and L2. :class:`SingleProbe` is the textbook ``nn.Linear`` module trained with ``torch.optim.Adam``
by the sequential reference. Both take initial weights and dropout masks from ``randomness``, so a probe gets the
same numbers whether it trains alone or in a stack.

Architecture: [softmax-weighted sum of hidden states ``sum_from``..S-1] -> [dropout] -> [Linear(C, H) -> ReLU ->
dropout] -> Linear(., K). ``hidden=0`` is the linear probe. The run's ``protocols.HeadSettings`` say which states
the sum reads (every one, or the Transformer outputs only: ``sum_from`` = 1, MARBLE), how its softmax logits start
(zeros, or N(0, 1) as MARBLE) and whether dropout also acts on the input (JukeMIR) or only after the hidden
layer (MARBLE).
"""
import math
from dataclasses import asdict

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import randomness as rnd
from .protocols import WEIGHTED_SUM, HeadSettings, ProbeConfig

PARAM_NAMES = ("w_hidden", "b_hidden", "w_out", "b_out", "mix")


def init_params(key: int, config: ProbeConfig, num_states: int, dim: int, num_outputs: int,
                mix_init: str = "zeros") -> dict:
    """Initial parameters of one probe (``nn.Linear``'s U(±1/sqrt(fan_in)) init; weighted-sum logits 0, or N(0, 1)
    with ``mix_init="normal"``).

    Args:
        num_states: S, the states the weighted sum mixes (the size of ``mix``).
    Returns:
        name -> CPU float32 tensor: w_hidden (C, H), b_hidden (1, H) [MLP only], w_out (W, K), b_out (1, K)
        with W = H or C, mix (S,) [weighted sum only].
    """
    hidden = {}
    width = config.hidden or dim
    if config.hidden:
        bound = 1 / math.sqrt(dim)
        hidden = {"w_hidden": rnd.init_uniform(key, rnd.INIT_HIDDEN, (dim, config.hidden), bound),
                  "b_hidden": rnd.init_uniform(key, rnd.INIT_BIAS_HIDDEN, (1, config.hidden), bound)}
    bound = 1 / math.sqrt(width)
    out = {"w_out": rnd.init_uniform(key, rnd.INIT_OUTPUT, (width, num_outputs), bound),
           "b_out": rnd.init_uniform(key, rnd.INIT_BIAS_OUTPUT, (1, num_outputs), bound)}
    mix = {}
    if config.layer == WEIGHTED_SUM:
        mix = {"mix": rnd.init_normal(key, rnd.INIT_MIX, (num_states,)) if mix_init == "normal"
               else torch.zeros(num_states)}
    return {**hidden, **out, **mix}


def apply_dropout(x: torch.Tensor, keys: torch.Tensor, step: int, purpose: int, threshold: torch.Tensor,
                  scale: torch.Tensor) -> torch.Tensor:
    """Inverted dropout of x: (P, B, W) with per-probe masks from ``randomness.dropout_keep``."""
    keep = rnd.dropout_keep(keys, step, purpose, x.shape[1], x.shape[2], threshold)
    return torch.where(keep, x * scale.view(-1, 1, 1), 0.0)


class StackedProbes(nn.Module):
    """P probes sharing one architecture (hidden width; per-layer or weighted-sum input).

    Args:
        params: name -> stacked tensor with a leading P (see :func:`init_params`), becomes ``nn.Parameter``.
        buffers: keys (P,) int64 probe keys, layers (P,) int64 hidden-state index (all ``WEIGHTED_SUM`` for a
            weighted-sum group), threshold (P,) int64 and scale (P,) float32 dropout (``randomness``).
        input_dropout: dropout on the input as well as after the hidden layer (``HeadSettings``).
        sum_from: a weighted-sum group mixes states ``sum_from``..S-1 of its input.
    """

    def __init__(self, params: dict, buffers: dict, input_dropout: bool = True, sum_from: int = 0):
        super().__init__()
        for name, value in params.items():
            setattr(self, name, nn.Parameter(value))
        for name, value in buffers.items():
            self.register_buffer(name, value)
        self.hidden = self.w_hidden.shape[-1] if "w_hidden" in params else 0
        self.weighted = "mix" in params
        self.dropout = bool((self.threshold > 0).any())
        self.input_dropout, self.sum_from = bool(input_dropout), int(sum_from)

    @classmethod
    def create(cls, configs: list, num_states: int, dim: int, num_outputs: int, device,
               head: HeadSettings = HeadSettings(), sum_from: int = 0) -> "StackedProbes":
        """Stack freshly initialised probes of ``configs`` (one architecture) on ``device``; a weighted-sum stack
        mixes states ``sum_from``..``num_states`` - 1."""
        keys = [rnd.probe_key(asdict(c)) for c in configs]
        singles = [init_params(k, c, num_states - sum_from, dim, num_outputs, head.mix_init)
                   for k, c in zip(keys, configs)]
        params = {name: torch.stack([s[name] for s in singles]).to(device) for name in singles[0]}
        threshold = rnd.dropout_threshold(torch.tensor([c.dropout for c in configs])).to(device)
        buffers = {"keys": torch.tensor(keys, dtype=torch.int64, device=device),
                   "layers": torch.tensor([c.layer for c in configs], dtype=torch.int64, device=device),
                   "threshold": threshold, "scale": rnd.dropout_scale(threshold)}
        return cls(params, buffers, head.input_dropout, sum_from)

    def options(self) -> dict:
        """The constructor's keyword options (for copies: ``StackedProbes(params, buffers, **options())``)."""
        return {"input_dropout": self.input_dropout, "sum_from": self.sum_from}

    def state(self) -> tuple:
        """(params, buffers): name -> detached tensor (P, ...)."""
        return ({n: p.detach() for n, p in self.named_parameters()}, {n: b for n, b in self.named_buffers()})

    def subset(self, keep) -> "StackedProbes":
        """A new stack of probes ``keep`` (bool (P,) or index tensor); parameters are copies."""
        params, buffers = self.state()
        return StackedProbes({n: p[keep].clone() for n, p in params.items()}, {n: b[keep] for n, b in buffers.items()},
                             **self.options())

    @property
    def num_probes(self) -> int:
        return self.keys.shape[0]

    def inputs(self, x: torch.Tensor, index=None) -> torch.Tensor:
        """Each probe's input rows.

        Args:
            x: (S, N, C) split features; index: (P, B) item indices, or None for every item (B = N).
        Returns:
            (P, B, C) per-layer inputs, or (S', P, B, C) for a weighted-sum group (S' = S - sum_from states).
        """
        if self.weighted:
            x = x[self.sum_from:]  # a view: the states the sum mixes
            return x.unsqueeze(1).expand(-1, self.num_probes, -1, -1) if index is None else x[:, index]
        return x[self.layers] if index is None else x[self.layers.unsqueeze(1), index]

    def forward(self, inputs: torch.Tensor, step=None) -> torch.Tensor:
        """inputs: from :meth:`inputs`; step: training step (dropout on) or None (eval). Returns (P, B, K)."""
        if self.weighted:
            inputs = torch.einsum("ps,spbc->pbc", self.mix.softmax(-1), inputs)
        if step is not None and self.dropout and self.input_dropout:
            inputs = apply_dropout(inputs, self.keys, step, rnd.DROPOUT_INPUT, self.threshold, self.scale)
        if self.hidden:
            inputs = F.relu(torch.baddbmm(self.b_hidden, inputs, self.w_hidden))  # (P, B, H)
            if step is not None and self.dropout:
                inputs = apply_dropout(inputs, self.keys, step, rnd.DROPOUT_HIDDEN, self.threshold, self.scale)
        return torch.baddbmm(self.b_out, inputs, self.w_out)  # (P, B, K)


class StackedAdam:
    """Adam over stacked parameters (leading dim P) with per-probe ``lr`` and ``l2`` (P,) tensors.

    Same update as ``torch.optim.Adam(weight_decay=l2)``: g += l2 * w; m, v moving averages; w -= lr / bc1 *
    m / (sqrt(v) / sqrt(bc2) + eps).
    """

    def __init__(self, params: list, lr: torch.Tensor, l2: torch.Tensor, betas=(0.9, 0.999), eps=1e-8):
        self.params, self.lr, self.l2, self.betas, self.eps = list(params), lr, l2, betas, eps
        self.decay = bool((l2 != 0).any())  # skip the L2 term when no probe has one
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.t = 0

    @staticmethod
    def _per_probe(value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return value.view(-1, *([1] * (like.dim() - 1)))

    @torch.no_grad()
    def step(self) -> None:
        self.t += 1
        b1, b2 = self.betas
        bc1, bc2_sqrt = 1 - b1 ** self.t, math.sqrt(1 - b2 ** self.t)
        for p, m, v in zip(self.params, self.m, self.v):
            grad = p.grad + self._per_probe(self.l2, p) * p if self.decay else p.grad
            m.lerp_(grad, 1 - b1)
            v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
            denom = v.sqrt().div_(bc2_sqrt).add_(self.eps)
            p.sub_(m.mul(self._per_probe(self.lr / bc1, p)).div_(denom))  # torch: p += (-lr / bc1 * m) / denom
            p.grad = None

    def subset(self, keep: torch.Tensor, params: list) -> None:
        """Keep the state of probes ``keep`` and bind to ``params`` (those of ``StackedProbes.subset``)."""
        self.params = list(params)
        self.m = [m[keep] for m in self.m]
        self.v = [v[keep] for v in self.v]
        self.lr, self.l2 = self.lr[keep], self.l2[keep]
        self.decay = bool((self.l2 != 0).any())


class SingleProbe(nn.Module):
    """One probe as a plain module (``nn.Linear`` layers): the sequential reference.

    Args:
        config: the probe. num_states: S. dim: C. num_outputs: K. device: where to put it.
        head: the run's ``HeadSettings``; sum_from: a weighted-sum probe mixes states ``sum_from``..S-1.
    """

    def __init__(self, config: ProbeConfig, num_states: int, dim: int, num_outputs: int, device,
                 head: HeadSettings = HeadSettings(), sum_from: int = 0):
        super().__init__()
        key = rnd.probe_key(asdict(config))
        self.layer, self.hidden = config.layer, config.hidden
        self.input_dropout, self.sum_from = head.input_dropout, int(sum_from)
        self.register_buffer("key", torch.tensor([key], dtype=torch.int64, device=device))
        self.register_buffer("threshold", rnd.dropout_threshold(torch.tensor([config.dropout])).to(device))
        self.register_buffer("scale", rnd.dropout_scale(self.threshold))
        init = init_params(key, config, num_states - self.sum_from, dim, num_outputs, head.mix_init)
        if self.hidden:
            self.hidden_layer = self._linear(init["w_hidden"], init["b_hidden"], device)
        self.output_layer = self._linear(init["w_out"], init["b_out"], device)
        if self.layer == WEIGHTED_SUM:
            self.mix = nn.Parameter(init["mix"].to(device))

    @staticmethod
    def _linear(weight: torch.Tensor, bias: torch.Tensor, device) -> nn.Linear:
        """nn.Linear holding weight (fan_in, fan_out) transposed and bias (1, fan_out)."""
        linear = nn.Linear(weight.shape[0], weight.shape[1], device=device)
        with torch.no_grad():
            linear.weight.copy_(weight.T)
            linear.bias.copy_(bias[0])
        return linear

    def _dropout(self, x: torch.Tensor, step: int, purpose: int) -> torch.Tensor:
        if not bool(self.threshold[0] > 0):
            return x
        return apply_dropout(x.unsqueeze(0), self.key, step, purpose, self.threshold, self.scale)[0]

    def forward(self, x: torch.Tensor, step=None) -> torch.Tensor:
        """x: (B, C), or (S', B, C) for a weighted-sum probe (the states it mixes) -> (B, K)."""
        if self.layer == WEIGHTED_SUM:
            x = torch.einsum("s,sbc->bc", self.mix.softmax(0), x)
        if step is not None and self.input_dropout:
            x = self._dropout(x, step, rnd.DROPOUT_INPUT)
        if self.hidden:
            x = F.relu(self.hidden_layer(x))
            if step is not None:
                x = self._dropout(x, step, rnd.DROPOUT_HIDDEN)
        return self.output_layer(x)
