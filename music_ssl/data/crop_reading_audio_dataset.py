"""music2vec's training dataset with crop reading: fairseq's ``FileAudioDataset`` semantics, decoding only the crop.

fairseq's ``FileAudioDataset.__getitem__`` decodes the whole file and ``RawAudioDataset.collater`` then keeps a
random window of the batch's target length. Here ``__getitem__`` returns the row unread (:class:`PendingAudio`) and
the collater, which knows the target length, decodes just that window (seek + read) at an offset drawn as fairseq
draws it (uniform over every valid start) from ``(seed, epoch, index)``, then hands fairseq's collater clips that
already have the target length. Batches, padding, bucketing and masks are fairseq's; file names live in a
:class:`StringTable`, so forked DataLoader workers share them instead of copying them.
"""
import logging
import os
from typing import Optional

import numpy as np
import torch
from fairseq.data.audio.raw_audio_dataset import RawAudioDataset
from fairseq.data.data_utils import compute_block_mask_1d

from .crop import PendingAudio, SharedEpoch, batch_buffer, crop_start, decode_into, seeded_torch_rng
from .manifest import read_manifest
from .string_table import StringTable

logger = logging.getLogger(__name__)


class CropReadingAudioDataset(RawAudioDataset):
    """Rows of ``manifest_path`` (fairseq's ``FileAudioDataset`` arguments), read crop by crop.

    Args:
        manifest_path: ``{split}.tsv``; rows shorter than ``min_sample_size`` samples are left out (as fairseq).
        seed: ``common.seed``; with the epoch and the clip index it fixes every crop offset.
        Others: fairseq's ``FileAudioDataset`` (sample_rate Hz, max_sample_size = crop samples, pad, normalize,
        num_buckets, compute_mask and the mask arguments).
    """

    def __init__(self, manifest_path: str, sample_rate: int, max_sample_size: Optional[int] = None,
                 min_sample_size: int = 0, pad: bool = False, normalize: bool = False, num_buckets: int = 0,
                 compute_mask: bool = False, seed: int = 1, **mask_compute_kwargs):
        super().__init__(sample_rate=sample_rate, max_sample_size=max_sample_size, min_sample_size=min_sample_size,
                         pad=pad, normalize=normalize, compute_mask=compute_mask, **mask_compute_kwargs)
        manifest = read_manifest(manifest_path)
        keep = manifest.sizes >= (min_sample_size or 0)  # (N,) fairseq's rule
        self.skipped_indices = set(np.flatnonzero(~keep).tolist())
        self.root_dir = str(manifest.root)
        self.fnames = StringTable(rel for rel, kept in zip(manifest.relpaths, keep) if kept)
        self.sizes = manifest.sizes[keep]
        self.seed, self.epoch = int(seed), SharedEpoch()
        logger.info("%s: %d clips read crop by crop (%d shorter than %d samples left out); names %.1f MB",
                    manifest_path, len(self.sizes), len(self.skipped_indices), min_sample_size or 0,
                    self.fnames.nbytes / 1e6)
        self.set_bucket_info(num_buckets)

    def set_epoch(self, epoch: int) -> None:
        self.epoch.set(epoch)

    def __getitem__(self, index: int) -> dict:
        path = os.path.join(self.root_dir, self.fnames[index])
        return {"id": index, "source": PendingAudio(path, self.sizes[index], index)}

    def collater(self, samples):
        """fairseq's batch of clips decoded at the batch's target length (fairseq's rule: the shortest clip, or the
        longest with padding, at most ``max_sample_size``). Unpadded batches are decoded straight into the batch
        tensor (in shared memory inside a DataLoader worker); padding, buckets and precomputed masks go through
        fairseq's collater."""
        samples = [s for s in samples if s["source"] is not None]
        if not samples:
            return {}
        sizes = [len(s["source"]) for s in samples]
        target = min(max(sizes) if self.pad else min(sizes), self.max_sample_size)
        if self.pad or self.is_compute_mask or getattr(self, "num_buckets", 0) or self.corpus_key is not None:
            return super().collater([self.read_item(s["source"], target) for s in samples])
        source = batch_buffer(len(samples), target)  # (B, target)
        for row, sample in zip(source, samples):
            self.read_into(sample["source"], row)
        return {"id": torch.LongTensor([s["id"] for s in samples]), "net_input": {"source": source}}

    def read_into(self, pending: PendingAudio, row: torch.Tensor) -> None:
        """The clip's window of ``len(row)`` samples at its seeded offset, decoded into ``row`` (samples,) and
        standardised with ``normalize`` (fairseq's ``postprocess``)."""
        start = crop_start(self.seed, self.epoch.get(), pending.index, len(pending) - len(row))
        decode_into(pending, start, row, self.sample_rate, self.normalize)

    def read_item(self, pending: PendingAudio, target: int) -> dict:
        """fairseq's ``__getitem__`` item for a window of ``min(len, target)`` samples: ``source`` (samples,)
        float32, and ``precomputed_mask`` when masks are computed here."""
        source = torch.empty(min(len(pending), target))
        self.read_into(pending, source)
        item = {"id": pending.index, "source": source}
        if self.is_compute_mask:  # fairseq computes the mask for the whole clip, then crops it: here, for the crop
            with seeded_torch_rng(self.seed, self.epoch.get(), pending.index):  # as the crop offset, resumable
                item["precomputed_mask"] = compute_block_mask_1d(
                    shape=(self.clone_batch, self._get_mask_indices_dims(len(source))), mask_prob=self.mask_prob,
                    mask_length=self.mask_length, mask_prob_adjust=self.mask_prob_adjust,
                    inverse_mask=self.inverse_mask, require_same_masks=True, expand_adjcent=self.expand_adjacent,
                    mask_dropout=self.mask_dropout, non_overlapping=self.non_overlapping)
        return item
