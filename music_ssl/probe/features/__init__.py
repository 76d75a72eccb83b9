"""Feature sources behind one interface (see ``source.FeatureSource``) and the on-disk cache.

``build_source(kind, path, ...)``:

===========  ==============================================================================
kind         source
===========  ==============================================================================
checkpoint   fairseq checkpoint (music2vec, MusicHuBERT, hubert, wav2vec2, data2vec_audio)
hf           local transformers model folder: wav2vec2 family (music2vec-v1, HuBERT, ...), or remote code
             (MERT) with ``trust_remote_code``
jukebox      folder of JukeMIR-layout Jukebox .npy features (4800-d per clip, named by JukeMIR's uid)
chroma       JukeMIR CHROMA baseline (72-d), librosa
mfcc         JukeMIR MFCC baseline (120-d), librosa
===========  ==============================================================================

A probe config's ``source.kind`` / ``source.naming`` are checked against these choices by the config schema
(``probe.config``) when it is composed; ``build_source`` checks ``kind`` once more for direct Python callers, and
that ``source.path`` suits it (``source_path``: a folder given as a checkpoint says which kind it looks like).
"""
from ..config import SOURCE_KINDS
from ..errors import ProbeConfigError
from .cache import FeatureSet, load_features
from .encoder_source import EncoderSource
from .handcrafted_source import HandcraftedSource
from .jukebox_source import JukeboxSource
from .source_path import check_source_path
from .source import FeatureSource


def build_source(kind: str, path=None, layers=None, batch_size: int = 8, chunk_seconds: float = 30.0,
                 device: str = "auto", dim: int = 4800, random_init: bool = False, seed: int = 0,
                 sample_rate: int = 22050, cnn: bool = False, naming: str = "jukemir",
                 trust_remote_code: bool = False) -> FeatureSource:
    """Build a feature source from the ``source:`` block of a probe config (see ``probe.config.SourceConfig``)."""
    if cnn and kind != "checkpoint":
        raise ProbeConfigError(f"source.cnn=true needs source.kind=checkpoint, not {kind!r}.")
    if trust_remote_code and kind != "hf":
        raise ProbeConfigError(f"source.trust_remote_code=true needs source.kind=hf, not {kind!r}.")
    if kind in ("checkpoint", "hf"):
        if path is None:
            raise ProbeConfigError(f"source.kind={kind} needs source.path (the checkpoint / model folder).")
        check_source_path(kind, path)
        return EncoderSource(kind, path, layers, batch_size, chunk_seconds, device, random_init, seed, cnn,
                             trust_remote_code)
    if random_init:
        raise ProbeConfigError(f"source.random_init=true needs source.kind=checkpoint, not {kind!r}.")
    if kind == "jukebox":
        if path is None:
            raise ProbeConfigError("source.kind=jukebox needs source.path (the folder of .npy features).")
        check_source_path(kind, path)
        return JukeboxSource(path, dim, naming)
    if kind in ("chroma", "mfcc"):
        return HandcraftedSource(kind, sample_rate)
    raise ProbeConfigError(f"unknown source.kind {kind!r}; choose one of {list(SOURCE_KINDS)}.")


__all__ = ["FeatureSet", "FeatureSource", "build_source", "load_features", "SOURCE_KINDS", "EncoderSource",
           "HandcraftedSource", "JukeboxSource"]
