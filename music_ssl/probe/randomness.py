"""Per-probe random numbers that do not depend on which other probes share a stacked computation.

Why: many probes train together as one stacked computation. If they drew from one shared generator, a probe's
batches and dropout masks would depend on its neighbours in the stack, and a batched run could never be compared
with a sequential run of the same configs. Here every number of probe ``p`` is a pure function of its own key
(``probe_key(config)``), the step and a purpose, so the batched trainer and the sequential reference draw exactly
the same initial weights, batches and dropout masks:

* initial weights: a CPU ``torch.Generator`` seeded with (key, purpose) — ``init_uniform``;
* batches: items ranked by a 32-bit counter hash of (key, step, item) — ``sample_batches``;
* dropout: each row of a mask is a window of a fixed table of uniform 15-bit integers (``TABLE_SIZE`` entries,
  made once from a fixed seed) at an offset hashed from (key, step, purpose, row) — ``dropout_keep``. This costs
  a 2-byte row copy per mask element instead of a hash per element; two rows of one batch share table entries
  with probability ~1e-4 (rows of 768). Rates are quantised to 1/32768 (0.2 -> 0.20001).

Hashes use a 32-bit integer mixer evaluated in int64 with every product below 2**63 (no overflow), so CPU and
CUDA give bit-identical results.
"""
import torch

from ..core.fingerprint import json_sha256

_MASK32 = 0xFFFFFFFF
_MUL1 = 0x7FEB352D  # both multipliers < 2**31: (x < 2**32) * mul < 2**63
_MUL2 = 0x5BD1E995
TABLE_BITS = 15  # table values are uniform integers in [0, 2**TABLE_BITS), stored as int16
TABLE_SIZE = 1 << 24  # entries of the dropout table (32 MiB)
TABLE_SEED = 20240601
WITH_REPLACEMENT_ABOVE = 1 << 16
_TABLES: dict = {}

# purposes: one independent stream each (< 16: init seeds are key * 16 + purpose)
(INIT_HIDDEN, INIT_OUTPUT, INIT_BIAS_HIDDEN, INIT_BIAS_OUTPUT, BATCH, DROPOUT_INPUT, DROPOUT_HIDDEN, INIT_MIX,
 CROP) = range(9)


def mix32(x: torch.Tensor) -> torch.Tensor:
    """Bijective 32-bit mixer on an int64 tensor holding values in [0, 2**32)."""
    x = x ^ (x >> 16)
    x = (x * _MUL1) & _MASK32
    x = x ^ (x >> 15)
    x = (x * _MUL2) & _MASK32
    return x ^ (x >> 16)


def probe_key(config: dict) -> int:
    """A 32-bit key from a probe config (a JSON-serialisable dict): the same config gives the same numbers."""
    digest = bytes.fromhex(json_sha256(config))
    return int.from_bytes(digest[:4], "little")


def stream_keys(keys: torch.Tensor, step: int, purpose: int) -> torch.Tensor:
    """keys: (P,) int64 probe keys -> (P,) int64 keys of the stream (step, purpose)."""
    salt = mix32(torch.tensor([(step * 16 + purpose) & _MASK32], dtype=torch.int64, device=keys.device))
    return mix32(mix32(keys ^ salt) ^ 0x2545F491)


def random_bits(keys: torch.Tensor, n: int) -> torch.Tensor:
    """keys: (P,) int64 stream keys -> (P, n) int64 uniform 32-bit values; value i depends on (key, i) only."""
    counters = mix32(torch.arange(n, dtype=torch.int64, device=keys.device))  # (n,)
    return mix32(mix32((counters.unsqueeze(0) + keys.unsqueeze(1)) & _MASK32) ^ keys.unsqueeze(1))


def sample_batches(keys: torch.Tensor, num_items: int, batch_size: int) -> torch.Tensor:
    """Draw ``batch_size`` distinct items out of ``num_items`` for each probe, without replacement.

    Items are ranked by a random 32-bit key (ties broken by item index). Above ``WITH_REPLACEMENT_ABOVE`` items
    (frame-level tasks) items are drawn with replacement instead, which costs O(batch) rather than O(items).

    Args:
        keys: (P,) int64 stream keys (``stream_keys(probe keys, step, BATCH)``).
    Returns:
        (P, min(batch_size, num_items)) int64 item indices.
    """
    if num_items > WITH_REPLACEMENT_ABOVE:
        return random_bits(keys, batch_size) % num_items
    ranked = random_bits(keys, num_items) * num_items + torch.arange(num_items, device=keys.device)  # unique
    return torch.topk(ranked, min(batch_size, num_items), dim=1, largest=False, sorted=True).indices


def uniform_table(device: torch.device) -> torch.Tensor:
    """(TABLE_SIZE,) int16 uniform integers in [0, 2**TABLE_BITS), the same on every device (made on CPU)."""
    device = torch.device(device)
    if device not in _TABLES:
        generator = torch.Generator().manual_seed(TABLE_SEED)
        table = torch.randint(0, 1 << TABLE_BITS, (TABLE_SIZE,), generator=generator, dtype=torch.int16)
        _TABLES[device] = table.to(device)
    return _TABLES[device]


def dropout_keep(keys: torch.Tensor, step: int, purpose: int, rows: int, width: int,
                 threshold: torch.Tensor) -> torch.Tensor:
    """Keep-mask of inverted dropout for each probe.

    Args:
        keys: (P,) int64 probe keys. step, purpose: the stream. rows x width: the mask shape per probe.
        threshold: (P,) int16 ``dropout_threshold(rate)``: an entry is dropped when its table value is below it.
    Returns:
        (P, rows, width) bool, True = kept.
    """
    table = uniform_table(keys.device)
    offsets = random_bits(stream_keys(keys, step, purpose), rows) % (TABLE_SIZE - width + 1)  # (P, rows)
    windows = table.unfold(0, width, 1).index_select(0, offsets.flatten())  # (P * rows, width): row copies
    return windows.view(keys.shape[0], rows, width) >= threshold.view(-1, 1, 1)


def dropout_threshold(rate: torch.Tensor) -> torch.Tensor:
    """rate: (P,) float in [0, 1) -> (P,) int16 table threshold (drop probability = threshold / 2**TABLE_BITS)."""
    return torch.round(rate.double() * (1 << TABLE_BITS)).clamp(0, (1 << TABLE_BITS) - 1).to(torch.int16)


def dropout_scale(threshold: torch.Tensor) -> torch.Tensor:
    """(P,) int16 threshold -> (P,) float32 inverted-dropout scale 1 / keep probability."""
    return ((1 << TABLE_BITS) / ((1 << TABLE_BITS) - threshold.double())).float()


def init_uniform(key: int, purpose: int, shape: tuple, bound: float) -> torch.Tensor:
    """U(-bound, bound) float32 CPU tensor of ``shape`` from a generator seeded with (key, purpose)."""
    generator = torch.Generator().manual_seed(key * 16 + purpose)
    return (2 * torch.rand(shape, generator=generator) - 1) * bound


def init_normal(key: int, purpose: int, shape: tuple) -> torch.Tensor:
    """N(0, 1) float32 CPU tensor of ``shape`` from a generator seeded with (key, purpose) (``torch.randn``)."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(key * 16 + purpose))
