"""Hidden states of a frozen wav2vec2-family encoder: a fairseq checkpoint (music2vec, MusicHuBERT, stock
hubert / wav2vec2 / data2vec_audio) or a local transformers model folder (native, or remote code such as MERT's
with ``trust_remote_code``: ``music_ssl.export.hf_encoder``).

The encoder object follows the shared contract (``music_ssl.checkpoint.FrozenEncoder`` /
``music_ssl.export.hf_encoder.HFEncoder``): ``encoder(audio (B, S), lengths)`` -> (list of L + 1 (B, T, C),
frame_lengths) and ``encoder.encode_long(audio (S,) numpy, chunk_seconds)`` -> list of L + 1 (T, C) numpy.
Files are batched only with files of exactly the same length (so no padding can change a result); files longer
than ``chunk_seconds`` go through ``encode_long``. Audio is resampled (soxr HQ) to the encoder's sample rate: a
checkpoint's task fixes it (its hash in the cache key covers it); a transformers folder's is
``preprocessor_config.json``'s ``sampling_rate`` (else 16000 Hz; MERT-v1: 24000), and it is in the cache key with
the folder's waveform normalisation and ``trust_remote_code``, so features made at one rate are never reused at
another. The model is loaded only when the cache misses.
"""
import logging
from collections import defaultdict
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from tqdm import tqdm

from music_ssl.core.fingerprint import file_sha256, folder_sha256
from music_ssl.core.device import resolve_device

from ...data.audio import audio_info, read_audio
from ..errors import MissingDataError, ProbeConfigError, ProbeDataError
from .encoding import Encoding, WindowFrames, model_norm_file, own_norm_off, read_prepared, window_start_seconds
from .source import FeatureSource, FrameMemo, mean_windows

logger = logging.getLogger(__name__)


class EncoderSource(FeatureSource):
    """Every hidden state of a frozen encoder.

    Args:
        kind: "checkpoint" (fairseq .pt) or "hf" (transformers folder).
        path: the checkpoint file / model folder.
        layers: hidden-state indices to keep (None = all L + 1).
        batch_size: files per forward pass (same-length files only).
        chunk_seconds: files longer than this are encoded in chunks (``encode_long``).
        device: "auto" (CUDA when present), "cpu", "cuda:0", ...
        random_init: checkpoint only: the checkpoint's architecture with fresh weights drawn with ``seed``.
        cnn: checkpoint only: the one feature is the raw conv feature extractor output (named "cnn") instead of
            the L + 1 hidden states (named "input" — the Transformer input — then "layer1".."layerL").
        trust_remote_code: hf only: allow a folder whose config.json has ``auto_map`` (e.g. MERT) to run its own
            Python code; without it such a folder is refused at once.
    """

    def __init__(self, kind: str, path, layers=None, batch_size: int = 8, chunk_seconds: float = 30.0,
                 device: Optional[str] = "auto", random_init: bool = False, seed: int = 0, cnn: bool = False,
                 trust_remote_code: bool = False):
        if random_init and kind != "checkpoint":
            raise ProbeConfigError("source.random_init=true needs source.kind=checkpoint (the architecture is read "
                                   "from the fairseq checkpoint).")
        self.kind, self.path = kind, Path(path)
        self.layers, self.batch_size, self.chunk_seconds = layers, int(batch_size), float(chunk_seconds)
        self.device, self.random_init, self.seed = resolve_device(device), bool(random_init), int(seed)
        self.cnn, self.trust_remote_code = bool(cnn), bool(trust_remote_code)
        if self.trust_remote_code and kind != "hf":
            raise ProbeConfigError(f"source.trust_remote_code=true needs source.kind=hf, not {kind!r}.")
        self._encoder, self._identity, self.names = None, None, None
        self.memo = FrameMemo()
        if not self.path.exists():
            what = "fairseq checkpoint file" if kind == "checkpoint" else "transformers model folder"
            raise MissingDataError(f"{self.path}: {what} not found (set source.path in the probe config).")
        if kind == "hf":  # refuse a remote-code folder now, not when the cache first misses
            from music_ssl.export.hf_encoder import HFModelError, check_remote_code

            try:
                check_remote_code(self.path, self.trust_remote_code)
            except HFModelError as err:
                raise ProbeConfigError(str(err)) from err

    def identity(self) -> dict:
        if self._identity is None:  # hashing a large checkpoint takes seconds: once per source
            extra = {"cnn": True} if self.cnn else {}
            if self.kind == "checkpoint":
                content = file_sha256(self.path)
            else:
                from music_ssl.export.hf_encoder import (HASHED_SUFFIXES, HFModelError, normalization_eps,
                                                         read_preprocessor)

                content = folder_sha256(self.path, HASHED_SUFFIXES)
                try:
                    sample_rate, normalize = read_preprocessor(self.path, warn=False)
                except HFModelError as err:
                    raise ProbeDataError(str(err)) from err
                extra = {"sample_rate": sample_rate, "trust_remote_code": self.trust_remote_code,
                         "normalize_eps": normalization_eps(self.path) if normalize else None}
            self._identity = {"kind": self.kind, "sha256": content,
                              "layers": self.layers, "chunk_seconds": self.chunk_seconds,
                              "random_init": self.random_init, "seed": self.seed if self.random_init else None,
                              **extra}
        return self._identity

    @property
    def encoder(self):
        """The frozen encoder, loaded on first use; loading errors become one-line ``ProbeDataError``s."""
        if self._encoder is None:
            from music_ssl.checkpoint import CheckpointError, FrozenEncoder
            from music_ssl.export.hf_encoder import HFEncoder, HFModelError

            try:
                if self.kind == "checkpoint":
                    self._encoder = FrozenEncoder.from_checkpoint(self.path, device=self.device,
                                                                  random_init=self.random_init, seed=self.seed,
                                                                  cnn=self.cnn)
                else:
                    self._encoder = HFEncoder.from_pretrained(self.path, device=self.device,
                                                              trust_remote_code=self.trust_remote_code)
            except (CheckpointError, HFModelError, FileNotFoundError) as err:
                raise ProbeDataError(" / ".join(str(err).split("\n"))) from err
        return self._encoder

    def _select(self, states: list) -> list:
        if self.layers is None:
            return list(range(len(states)))
        bad = [i for i in self.layers if not 0 <= int(i) < len(states)]
        if bad:
            raise ProbeConfigError(f"source.layers {bad} out of range: the encoder has {len(states)} hidden states.")
        return [int(i) for i in self.layers]

    def extract(self, paths, pooling, window, hop, encoding: Encoding = None):
        """See ``FeatureSource.extract``; ``encoding`` (``features.encoding``): the waveform rule and, with
        ``encode="window"``, windows encoded alone ((W, S, C) window means; with ``pooling="frames"`` one
        ``WindowFrames`` per file: every window's frames)."""
        encoding = encoding or Encoding()
        if encoding.encode == "window":
            return self._extract_windows(paths, pooling, encoding)
        memo = self.memo if encoding.default else self.__dict__.setdefault("_memos", {}).setdefault(
            repr(encoding), FrameMemo())  # frames of another waveform rule never mix with the default's
        out: list = [None] * len(paths)
        missing = []
        for index, path in enumerate(paths):
            states = memo.get(path)
            if states is None:
                missing.append(index)
            else:
                out[index] = self._pool(states, pooling, window, hop)
        if missing:
            enc = self.encoder
            self.frame_rate = float(enc.frame_rate)
            with tqdm(total=len(missing), desc=f"{self.kind} features", unit="file", disable=None) as bar:
                for batch in self._batches([paths[i] for i in missing], encoding):
                    for index, states in self._encode([missing[i] for i in batch], paths, enc, encoding):
                        keep = self._select(states)
                        self.names = ["cnn"] if self.cnn else [("input" if i == 0 else f"layer{i}") for i in keep]
                        stacked = np.stack([states[i] for i in keep])  # (S, T, C)
                        memo.put(paths[index], stacked)
                        out[index] = self._pool(stacked, pooling, window, hop)
                        bar.update(1)
        return out, self.names, self.frame_rate

    def _pool(self, stacked, pooling, window, hop):
        if pooling == "frames":
            return np.ascontiguousarray(stacked.transpose(1, 0, 2)).astype(np.float16)  # (T, S, C)
        return mean_windows(stacked, self.frame_rate, window, hop)

    def _extract_windows(self, paths, pooling, encoding: Encoding) -> tuple:
        """Each window of ``encoding`` through the encoder on its own -> per file (W, S, C) float32 window means, or
        with ``pooling="frames"`` a ``WindowFrames`` (each window's (T_w, S, C) float16 frames and its start, s).

        Windows of ``batch_size`` files at a time are batched with windows of exactly the same length (no padding)."""
        enc = self.encoder
        self.frame_rate = float(enc.frame_rate)
        out = [None] * len(paths)
        with tqdm(total=len(paths), desc=f"{self.kind} features (windows alone)", unit="file", disable=None) as bar:
            for first in range(0, len(paths), self.batch_size):
                group = list(range(first, min(first + self.batch_size, len(paths))))
                windows = {i: read_prepared(paths[i], enc.sample_rate, encoding,
                                            lambda audio: model_norm_file(enc, audio)) for i in group}
                pooled = self._encode_windows(group, windows, paths, enc, encoding, pooling)
                for i in group:
                    if pooling == "frames":
                        starts = [window_start_seconds(w, enc.sample_rate, encoding.window, encoding.hop)
                                  for w in range(len(pooled[i]))]
                        out[i] = WindowFrames(np.array(starts, np.float64), pooled[i])
                    else:
                        out[i] = np.stack(pooled[i]).astype(np.float32)  # (W, S, C)
                bar.update(len(group))
        return out, self.names, self.frame_rate

    def _encode_windows(self, group, windows, paths, enc, encoding: Encoding, pooling) -> dict:
        """file index -> per window (S, C) frame mean, or (T_w, S, C) float16 frames with ``pooling="frames"``;
        ``windows``: file index -> list of (samples,) float32 windows."""
        pooled = {i: [None] * len(windows[i]) for i in group}
        by_length = defaultdict(list)  # samples -> [(file, window)]
        for i in group:
            for w, audio in enumerate(windows[i]):
                if len(audio) < enc.receptive_field:
                    raise ProbeDataError(too_short(paths[i], len(audio), enc.sample_rate, enc.receptive_field))
                by_length[len(audio)].append((i, w))
        with own_norm_off(enc, encoding):  # normalised already (read_prepared)
            for pairs in by_length.values():
                for start in range(0, len(pairs), self.batch_size):
                    batch = pairs[start:start + self.batch_size]
                    audio = torch.from_numpy(np.stack([windows[i][w] for i, w in batch])).to(enc.device)
                    hidden, frame_lengths = enc(audio)  # L + 1 x (B, T, C)
                    for row, (i, w) in enumerate(batch):
                        states = [h[row, :int(frame_lengths[row])].float() for h in hidden]  # each (T, C)
                        keep = self._select(states)
                        self.names = ["cnn"] if self.cnn else [("input" if k == 0 else f"layer{k}") for k in keep]
                        if pooling == "frames":
                            frames = torch.stack([states[k] for k in keep], 1)  # (T, S, C)
                            pooled[i][w] = frames.cpu().numpy().astype(np.float16)
                        else:
                            pooled[i][w] = np.stack([states[k].mean(0).cpu().numpy() for k in keep])  # (S, C)
        return pooled

    def _batches(self, paths, encoding: Encoding = Encoding()) -> list:
        """Lists of indices into ``paths``: same-length short files together (<= batch_size), long files alone
        (every file alone when ``encoding`` trims silence: lengths then differ)."""
        by_length = defaultdict(list)
        for index, path in enumerate(paths):
            info = audio_info(path)
            key = ("long", index) if info.seconds > self.chunk_seconds or encoding.trim_silence else (
                info.sample_rate, info.frames)
            by_length[key].append(index)
        batches = []
        for indices in by_length.values():
            batches += [indices[i:i + self.batch_size] for i in range(0, len(indices), self.batch_size)]
        return batches

    def _encode(self, batch, paths, enc, encoding: Encoding = Encoding()):
        """Yield (path index, list of S numpy (T, C)) for one batch of indices."""
        # downmixed, resampled with soxr HQ (before #19 torchaudio's sinc: both band-limited, features can move in
        # the last digits)
        if encoding.default:
            audios = [read_audio(paths[i], enc.sample_rate)[0] for i in batch]  # each (samples,) float32
        else:  # another waveform rule / a crop: applied here, the encoder's own normalisation off below
            audios = [read_prepared(paths[i], enc.sample_rate, encoding, lambda a: model_norm_file(enc, a))[0]
                      for i in batch]
        with own_norm_off(enc, encoding):
            yield from self._encode_audio(batch, paths, enc, audios)

    def _encode_audio(self, batch, paths, enc, audios):
        """Yield (path index, list of S numpy (T, C)) for prepared ``audios`` (each (samples,) float32)."""
        for index, audio in zip(batch, audios):
            if len(audio) < enc.receptive_field:  # the encoder would say "audio item k": name the file instead
                raise ProbeDataError(too_short(paths[index], len(audio), enc.sample_rate, enc.receptive_field))
        if len(batch) == 1 and len(audios[0]) > self.chunk_seconds * enc.sample_rate:
            yield batch[0], [np.asarray(s, np.float32) for s in enc.encode_long(audios[0], self.chunk_seconds)]
            return
        audio = torch.from_numpy(np.stack(audios)).to(enc.device)  # (B, samples)
        hidden, frame_lengths = enc(audio)
        for row, index in enumerate(batch):
            n = int(frame_lengths[row])
            yield index, [h[row, :n].float().cpu().numpy() for h in hidden]


def too_short(path, samples: int, sample_rate: int, receptive_field: int) -> str:
    """The one line for a file shorter than the encoder's receptive field (it has no feature frame)."""
    return (f"{path}: {samples} samples at {sample_rate} Hz ({1000 * samples / sample_rate:g} ms), shorter than the "
            f"encoder's receptive field ({receptive_field} samples = {1000 * receptive_field / sample_rate:g} ms): it "
            f"has no feature frame; drop it from the task or zero-pad the file to at least {receptive_field} samples.")
