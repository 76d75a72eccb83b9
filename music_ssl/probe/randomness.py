"""Counter-based random numbers for probes: every value depends only on (probe key, step, purpose, position).

Why: many probes are trained together as one stacked computation. If each probe drew from one shared torch
generator, its batches and dropout masks would depend on which other probes share the batch, and a batched run
could never be compared with a sequential run of the same configs. Here probe ``p``'s numbers are a pure
function of its own key, so the batched trainer and the sequential reference draw exactly the same batches,
dropout masks and initial weights, and each costs only its own share of random numbers.

The hash is a 32-bit integer mixer evaluated in int64 arithmetic with every product kept below 2**63
(no overflow), so CPU and CUDA give bit-identical results.
"""
import hashlib
import json

import torch

_MASK32 = 0xFFFFFFFF
_MUL1 = 0x7FEB352D  # both multipliers < 2**31: (x < 2**32) * mul < 2**63
_MUL2 = 0x5BD1E995
_COUNTER_CACHE: dict = {}
WITH_REPLACEMENT_ABOVE = 1 << 16

# purposes: one independent stream each
INIT_HIDDEN, INIT_OUTPUT, INIT_BIAS_HIDDEN, INIT_BIAS_OUTPUT, BATCH, DROPOUT_INPUT, DROPOUT_HIDDEN = range(7)


def mix32(x: torch.Tensor) -> torch.Tensor:
    """Bijective 32-bit mixer on an int64 tensor holding values in [0, 2**32)."""
    x = x ^ (x >> 16)
    x = (x * _MUL1) & _MASK32
    x = x ^ (x >> 15)
    x = (x * _MUL2) & _MASK32
    return x ^ (x >> 16)


def probe_key(config: dict) -> int:
    """A 32-bit key from a probe config (a JSON-serialisable dict): the same config gives the same numbers."""
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).digest()
    return int.from_bytes(digest[:4], "little")


def stream_keys(keys: torch.Tensor, step: int, purpose: int) -> torch.Tensor:
    """keys: (P,) int64 probe keys -> (P,) int64 keys of the stream (step, purpose)."""
    salt = mix32(torch.tensor([(step * 16 + purpose) & _MASK32], dtype=torch.int64, device=keys.device))
    return mix32(mix32(keys ^ salt) ^ 0x2545F491)


def random_bits(keys: torch.Tensor, shape: tuple) -> torch.Tensor:
    """keys: (P,) int64 stream keys -> (P, *shape) int64 uniform 32-bit values."""
    n = 1
    for s in shape:
        n *= s
    cache_key = (n, keys.device)
    counters = _COUNTER_CACHE.get(cache_key)
    if counters is None:
        counters = mix32(torch.arange(n, dtype=torch.int64, device=keys.device))
        if n <= 1 << 24:
            _COUNTER_CACHE[cache_key] = counters
    x = mix32((counters.unsqueeze(0) + keys.unsqueeze(1)) & _MASK32)
    x = mix32(x ^ keys.unsqueeze(1))
    return x.view(keys.shape[0], *shape)


def uniform(keys: torch.Tensor, shape: tuple) -> torch.Tensor:
    """keys: (P,) int64 stream keys -> (P, *shape) float32 uniform in [0, 1) (24-bit resolution)."""
    return (random_bits(keys, shape) >> 8).to(torch.float32) * (1.0 / (1 << 24))


def sample_batches(keys: torch.Tensor, num_items: int, batch_size: int) -> torch.Tensor:
    """Draw ``batch_size`` distinct items out of ``num_items`` for each probe, without replacement.

    Items are ranked by a random 32-bit key (ties broken by item index), so the first ``b`` of a draw of
    ``batch_size`` equal the draw of ``b``: probes with smaller batches use a prefix of the row.
    Above ``WITH_REPLACEMENT_ABOVE`` items (frame-level tasks) items are drawn with replacement instead,
    which costs O(batch) rather than O(items) per step.

    Returns:
        (P, min(batch_size, num_items)) int64 item indices.
    """
    if num_items > WITH_REPLACEMENT_ABOVE:
        return random_bits(keys, (batch_size,)) % num_items
    bits = random_bits(keys, (num_items,))  # (P, N)
    ranked = bits * num_items + torch.arange(num_items, device=keys.device)  # < 2**32 * N: unique, no overflow
    k = min(batch_size, num_items)
    return torch.topk(ranked, k, dim=1, largest=False, sorted=True).indices
