"""MusicHuBERT's training dataset with crop reading: fairseq's ``HubertDataset`` semantics, decoding only the crop
and parsing only the crop's labels.

fairseq's ``HubertDataset.__getitem__`` decodes the whole file and encodes its whole label line (24,000 labels for a
4-min song at 100 Hz); ``collater_audio`` then keeps a window and ``collater_frm_label`` the labels from frame
``round(start × label_rate / sample_rate)``. Here ``__getitem__`` returns the row unread; ``collater_audio`` decodes
just the window (seek + read) at an offset drawn as fairseq draws it (uniform over every valid start, or 0 without
``random_crop``) from ``(seed, epoch, index)``; fairseq's ``collater_frm_label`` slices :class:`PendingLabels`, which
parse only the labels of the slice. Frame *t* of a crop keeps the label the whole-file path gives it.

Rows, labels and offsets are numpy arrays (no Python object per row: forked DataLoader workers share them). The
label checks of fairseq's constructor (line counts, a warning on misaligned lengths) are the MusicHuBERT task's
strict checks, made before this dataset is built.
"""
import logging
import os
import sys
from typing import List, Optional, Sequence

import numpy as np
import torch
from fairseq.data.audio.hubert_dataset import HubertDataset
from fairseq.data.fairseq_dataset import FairseqDataset

from ..core.errors import ConfigError
from .crop import PendingAudio, SharedEpoch, batch_buffer, crop_start, decode_into
from .label_files import LabelFileError, dictionary_ids, line_index, read_label_slice
from .manifest import read_manifest
from .string_table import StringTable

logger = logging.getLogger(__name__)


class PendingLabels:
    """One label line of a dataset item, not yet parsed: ``len()`` is its label count; ``labels[a:b]`` parses only
    labels ``a:b`` into a (b − a,) int32 tensor of dictionary indices (what fairseq's ``LabelEncoder`` gives)."""

    __slots__ = ("dataset", "index", "label_idx")

    def __init__(self, dataset: "CropReadingHubertDataset", index: int, label_idx: int):
        self.dataset, self.index, self.label_idx = dataset, index, label_idx

    def __len__(self) -> int:
        return int(self.dataset.label_counts[self.label_idx][self.index])

    def __getitem__(self, window: slice) -> torch.Tensor:
        first, stop, _ = window.indices(len(self))
        return self.dataset.read_labels(self.index, self.label_idx, first, max(first, stop))


class CropReadingHubertDataset(HubertDataset):
    """Rows of ``manifest_path`` with frame labels from ``label_paths``, read crop by crop.

    Args:
        manifest_path: ``{split}.tsv``; rows outside ``[min_keep_sample_size, max_keep_sample_size]`` are left out.
        label_paths: one ``{split}.{label}`` per label, one line per manifest row; label_rates: Hz (> 0).
        dictionaries: fairseq ``Dictionary`` per label, with symbols ``"0" … "k-1"`` (label prep's).
        seed: ``common.seed``; with the epoch and the item index it fixes every crop offset.
        Others: fairseq's ``HubertDataset`` (pad_list, eos_list, max_sample_size, shuffle, pad_audio, normalize,
        random_crop, single_target).
    """

    def __init__(self, manifest_path: str, sample_rate: float, label_paths: List[str], label_rates,
                 pad_list: List[int], eos_list: List[int], dictionaries: Sequence, seed: int = 1,
                 max_keep_sample_size: Optional[int] = None, min_keep_sample_size: Optional[int] = None,
                 max_sample_size: Optional[int] = None, shuffle: bool = True, pad_audio: bool = False,
                 normalize: bool = False, random_crop: bool = False, single_target: bool = False):
        FairseqDataset.__init__(self)  # not HubertDataset's: it keeps rows and label offsets in Python lists
        manifest = read_manifest(manifest_path)
        self.inds = self.kept_rows(manifest.sizes, min_keep_sample_size, max_keep_sample_size)
        self.audio_root, self.sizes = str(manifest.root), manifest.sizes[self.inds]
        self.audio_names = StringTable(manifest.relpaths[i] for i in self.inds)
        self.sample_rate, self.shuffle, self.random_crop = sample_rate, shuffle, random_crop
        self.num_labels, self.pad_list, self.eos_list = len(label_paths), pad_list, eos_list
        self.label_processors, self.single_target, self.store_labels = None, single_target, False
        one_rate = isinstance(label_rates, (int, float))
        self.label_rates = [float(label_rates)] * len(label_paths) if one_rate else list(label_rates)
        if any(rate <= 0 for rate in self.label_rates):
            raise ConfigError("task.crop_reading needs frame labels (label_rate > 0); set task.crop_reading=false.")
        self.label_paths = list(label_paths)
        self.index_labels(len(manifest), dictionaries)
        self.max_sample_size = max_sample_size if max_sample_size is not None else sys.maxsize
        self.pad_audio, self.normalize = pad_audio, normalize
        self.seed, self.epoch = int(seed), SharedEpoch()
        logger.info("%s: %d clips read crop by crop (%d left out), random_crop=%s, max_sample_size=%d",
                    manifest_path, len(self.sizes), len(manifest) - len(self.sizes), random_crop, self.max_sample_size)

    @staticmethod
    def kept_rows(sizes: np.ndarray, min_keep: Optional[int], max_keep: Optional[int]) -> np.ndarray:
        """(M,) int64 manifest rows fairseq keeps: ``min_keep <= size <= max_keep`` (None: no bound)."""
        keep = np.ones(len(sizes), dtype=bool)
        if min_keep is not None:
            keep &= sizes >= min_keep
        if max_keep is not None:
            keep &= sizes <= max_keep
        return np.flatnonzero(keep)

    def index_labels(self, rows: int, dictionaries: Sequence) -> None:
        """Per label file: byte range and label count of each kept row's line, and the id → index table."""
        self.label_bytes, self.label_counts, self.label_ids, self.label_index_of = [], [], [], []
        for path, dictionary in zip(self.label_paths, dictionaries):
            offsets, counts = line_index(path)
            if len(counts) != rows:
                raise LabelFileError(f"{path}: {len(counts)} lines for {rows} manifest rows; make the labels again "
                                     f"from this manifest (music-ssl-kmeans).")
            k = dictionary_ids(dictionary.symbols[dictionary.nspecial:])
            if k is None:
                raise ConfigError(f"{path}: task.crop_reading reads label ids 0..k-1 (music-ssl-kmeans's "
                                  f"dictionary); this dictionary has other symbols: set task.crop_reading=false.")
            self.label_bytes.append(np.stack([offsets[self.inds], offsets[self.inds + 1]], axis=1))  # (M, 2)
            self.label_counts.append(counts[self.inds])
            self.label_ids.append(k)
            self.label_index_of.append(np.array([dictionary.index(str(i)) for i in range(k)], dtype=np.int32))

    def set_epoch(self, epoch: int) -> None:
        self.epoch.set(epoch)

    def __getitem__(self, index: int) -> dict:
        path = os.path.join(self.audio_root, self.audio_names[index])
        labels = [PendingLabels(self, index, j) for j in range(self.num_labels)]
        return {"id": index, "source": PendingAudio(path, self.sizes[index], index), "label_list": labels}

    def collater_audio(self, audios: List[PendingAudio], audio_size: int):
        """fairseq's ``collater_audio`` over windows decoded at their seeded offsets straight into the batch (in
        shared memory inside a DataLoader worker): (audio (B, audio_size), padding_mask (B, audio_size) True on
        padding, starts: each window's first sample, which places its labels)."""
        collated = batch_buffer(len(audios), audio_size)
        padding_mask = torch.zeros(collated.shape, dtype=torch.bool)
        starts = []
        for i, pending in enumerate(audios):
            length = min(len(pending), audio_size)
            slack = len(pending) - length
            start = crop_start(self.seed, self.epoch.get(), pending.index, slack) if self.random_crop else 0
            decode_into(pending, start, collated[i, :length], self.sample_rate, self.normalize)
            collated[i, length:] = 0.0
            padding_mask[i, length:] = True
            starts.append(start)
        return collated, padding_mask, starts

    def read_labels(self, index: int, label_idx: int, first: int, stop: int) -> torch.Tensor:
        """Labels ``first:stop`` of item ``index``'s line as (stop − first,) int32 dictionary indices."""
        ids = read_label_slice(self.label_paths[label_idx], int(self.inds[index]),
                               tuple(self.label_bytes[label_idx][index]), first, stop, self.label_ids[label_idx])
        return torch.from_numpy(self.label_index_of[label_idx][ids])
