"""Seeded, vectorised span masks in torch: fairseq's ``compute_mask_indices`` (static spans) on the batch's device.

fairseq draws the time masks of wav2vec2 / HuBERT / data2vec-audio in numpy, one Python loop per row, on the
training process, every step, from OS entropy (``np.random.default_rng(None)``): runs are not reproducible
from ``common.seed`` and the mask waits on the host. :func:`span_mask` draws the same distribution with a few
whole-batch tensor ops on the batch's device and no host sync. Every random number is a counter-based hash of
``(seed, update, sample id, stream, position)`` in integer arithmetic, so a row's draws depend only on its own
key (not on the batch it sits in), and CPU and CUDA give the same bits.

The algorithm follows fairseq's ``compute_mask_indices`` with ``mask_type="static"``, ``no_overlap=False``,
``idc_select_ver=1``, ``num_mask_ver=2`` (the settings both models use):

1. per row, ``num = max(min_masks, floor(mask_prob * sz / mask_length + u))`` with ``sz`` the unpadded length;
2. ``num`` distinct span starts uniformly among the first ``max(sz - mask_length, num + 1)`` positions;
3. each start masks ``mask_length`` frames, clipped at ``sz`` (overlaps merge);
4. ``require_same_masks``: rows keep a uniform random subset of their masked frames, as many as the row with the
   fewest;
5. ``mask_dropout``: unmask ``round(count * mask_dropout)`` uniformly chosen masked frames per row.

Statistical agreement with fairseq is tested in tests/test_masking.py; ``benchmarks/mask_bench.py`` times both.
"""
import functools
from typing import Optional

import torch

from ..core.errors import ConfigError

MASK32 = 0xFFFFFFFF
MIX = 0x45D9F3B  # < 2**27: a (< 2**32) value times MIX stays inside int64
# streams of random numbers drawn per row
NUM_STREAM, START_STREAM, SAME_STREAM, DROP_STREAM = 1, 2, 3, 4


def mix32(x):
    """A 32-bit integer hash (two multiply-xorshift rounds) of values in [0, 2**32): int64 tensors or Python ints."""
    x = ((x >> 16) ^ x) * MIX & MASK32
    x = ((x >> 16) ^ x) * MIX & MASK32
    return (x >> 16) ^ x


def row_keys(seed: int, update: int, ids: torch.Tensor) -> torch.Tensor:
    """(B,) int64 keys in [0, 2**32) from the run's seed, the update number and each row's sample id."""
    base = mix32(mix32(seed & MASK32) ^ (update & MASK32))  # a Python int: no device work
    return mix32((ids.long() & MASK32) ^ base)


@functools.lru_cache(maxsize=16)
def position_hashes(length: int, device: str) -> torch.Tensor:
    """(length,) int64 hashes of the positions 1..length (cached per length and device)."""
    return mix32(torch.arange(1, length + 1, device=device))


def stream(keys: torch.Tensor, which: int, length: int) -> torch.Tensor:
    """(B, length) int64 hashes in [0, 2**32): position t of stream ``which`` for each row key in ``keys`` (B,)."""
    row = mix32(keys ^ mix32(which * 0x9E3779B1 & MASK32))  # (B,)
    return mix32(row[:, None] ^ position_hashes(length, str(keys.device))[None])


def uniform(keys: torch.Tensor, which: int) -> torch.Tensor:
    """(B,) float64 uniforms in [0, 1) (24 random bits) of stream ``which``."""
    return (mix32(keys ^ mix32(which * 0x9E3779B1 & MASK32)) >> 8).double() / float(1 << 24)


def random_keys(hashes: torch.Tensor, eligible: torch.Tensor) -> torch.Tensor:
    """(B, T) distinct int64 sort keys: the hash (position as tie-break) where eligible, above every hash elsewhere."""
    position = torch.arange(hashes.size(1), device=hashes.device)
    return torch.where(eligible, hashes, MASK32 + 1) << 20 | position  # T < 2**20 frames


def keep_random(mask: torch.Tensor, keys: torch.Tensor, which: int, count: torch.Tensor) -> torch.Tensor:
    """``mask`` (B, T) reduced to ``count`` (B,) or (1,) uniformly chosen True positions per row (all if fewer)."""
    order = random_keys(stream(keys, which, mask.size(1)), mask).argsort(dim=1)  # (B, T)
    positions = torch.arange(mask.size(1), device=mask.device).expand_as(order)
    rank = torch.empty_like(order).scatter_(1, order, positions)  # (B, T) rank of each position
    return mask & (rank < count.view(-1, 1))


def choose_starts(eligible: torch.Tensor, keys: torch.Tensor, num: torch.Tensor, most: int) -> torch.Tensor:
    """(B, T) bool: ``num`` (B,) uniformly chosen eligible positions per row, ``num <= most`` (a static bound, so a
    top-k replaces a full sort and nothing waits for the device)."""
    most = min(most, eligible.size(1))
    chosen = random_keys(stream(keys, START_STREAM, eligible.size(1)), eligible).topk(most, dim=1, largest=False)
    take = torch.arange(most, device=eligible.device)[None] < num[:, None]  # (B, most)
    return torch.zeros_like(eligible).scatter_(1, chosen.indices, take)


def span_mask(shape, padding_mask: Optional[torch.Tensor], mask_prob: float, mask_length: int, min_masks: int = 0,
              require_same_masks: bool = True, mask_dropout: float = 0.0, *, seed: int, update: int,
              ids: Optional[torch.Tensor] = None, device=None) -> torch.Tensor:
    """Span masks with the distribution of fairseq's ``compute_mask_indices`` (static spans), seeded.

    Args:
        shape: (B, T) frames.
        padding_mask: (B, T) bool, True on padded frames (never masked), or None.
        mask_prob, mask_length, min_masks, require_same_masks, mask_dropout: as ``compute_mask_indices``.
        seed: the run's seed (``common.seed``); update: the update number; ids: (B,) int sample ids (dataset
            indices; default 0..B-1). Same (seed, update, id) → same draws for that row.
        device: where to compute (default: ``padding_mask``'s or ``ids``' device, else CPU).

    Returns:
        (B, T) bool mask on ``device``, True on masked frames.
    """
    batch, frames = shape
    device = device or (padding_mask.device if padding_mask is not None else ids.device if ids is not None else "cpu")
    ids = torch.arange(batch, device=device) if ids is None else ids.to(device)
    keys = row_keys(seed, update, ids)  # (B,)
    position = torch.arange(frames, device=device)  # (T,)
    size = (torch.full((batch,), frames, device=device) if padding_mask is None
            else frames - padding_mask.to(device).long().sum(1))  # (B,) unpadded frames
    num = torch.floor(mask_prob * size.double() / mask_length + uniform(keys, NUM_STREAM)).long().clamp(min=min_masks)
    candidates = torch.maximum(size - mask_length, num + 1)  # (B,) span starts drawn from [0, candidates)
    eligible = position[None] < candidates[:, None]  # (B, T)
    most = max(min_masks, int(mask_prob * frames / mask_length + 1))  # num <= most (sz <= T, u < 1)
    starts = choose_starts(eligible, keys, num, most)  # (B, T): num starts per row
    covered = torch.cumsum(starts.int(), dim=1)  # (B, T) starts at or before t
    covered = covered - torch.nn.functional.pad(covered, (mask_length, 0))[:, :frames]  # starts in (t - L, t]
    mask = (covered > 0) & (position[None] < size[:, None])
    if require_same_masks:
        mask = keep_random(mask, keys, SAME_STREAM, mask.sum(1).min().view(1))
    if mask_dropout > 0:
        holes = torch.round(mask.sum(1).double() * mask_dropout).long()  # (B,) as np.rint: half to even
        mask = mask & ~keep_random(mask, keys, DROP_STREAM, holes)
    return mask


SEEDED_MASKS_HELP = ("draw time masks with music_ssl.models.masking.span_mask (torch, on the batch's device, seeded "
                     "from mask_seed, the update number and each sample's id) instead of fairseq's numpy "
                     "compute_mask_indices (OS entropy); same distribution, different draws")
MASK_SEED_HELP = "seed of the seeded masks (default: common.seed)"


class SeededMasksMixin:
    """The model side of seeded masks: carries the batch's sample ids through the parent's ``forward`` to
    ``apply_mask``, which seeds masks with them (the task side: ``music_ssl.tasks.seeded_masks.MaskIdsMixin``).

    The model sets ``self.seeded_masks``; the tasks pass ``net_input["mask_ids"]`` when ``wants_mask_ids``.
    """

    seeded_masks = False
    mask_ids = None  # (B,) dataset ids of the batch being forwarded

    wants_mask_ids = property(lambda self: self.seeded_masks, doc="tasks pass net_input['mask_ids'] when True")

    def forward(self, source, *args, mask_ids=None, **kwargs):
        """The parent's forward; ``mask_ids`` (B,) are the samples' dataset ids, which seed their masks."""
        self.mask_ids = mask_ids
        try:
            return super().forward(source, *args, **kwargs)
        finally:
            self.mask_ids = None


def check_seeded_mask_settings(cfg) -> None:
    """Raise ValueError when ``cfg.seeded_masks`` is on with a masking setting :func:`span_mask` does not draw."""
    if not cfg.seeded_masks:
        return
    if str(cfg.mask_selection) != "static" or cfg.no_mask_overlap:
        raise ConfigError(f"model.seeded_masks=true draws static, overlapping spans only (found mask_selection="
                          f"{cfg.mask_selection}, no_mask_overlap={cfg.no_mask_overlap}): set model.seeded_masks=false.")
    if not isinstance(cfg.mask_seed, int):
        raise ConfigError(f"model.mask_seed={cfg.mask_seed!r} is not an integer: set model.mask_seed (or common.seed).")
