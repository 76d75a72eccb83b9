"""music2vec2: data2vec 2.0 (Baevski et al. 2023, fairseq ``data2vec_multi``) pretraining on music audio.

fairseq's :class:`Data2VecMultiModel` already implements everything data2vec 2.0 adds over data2vec 1.0: several
masked copies of each clip (``clone_batch``), block masks drawn by the dataset (``task.precompute_mask_config``),
a student that encodes only the unmasked frames, a light convolutional decoder, and the EMA teacher's top-K layer
average with instance-normalised layers. This subclass only

* makes the audio modality the default and takes the music2vec paper's target settings where they carry over
  (top-8 layers, instance norm per layer; crop length is the task's ``crop_seconds``),
* works on CPU process groups (fairseq's ``compute_var`` moves its count to CUDA unconditionally),
* exposes every hidden state (``extract_hidden_states``, Hugging Face ``output_hidden_states`` order) for probing.

fairseq's data2vec 2.0 files import each other as the top-level package ``examples`` (fairseq's source layout) and
their package ``__init__`` files import torchvision's image datasets; :func:`import_data2vec2` loads them from the
installed ``fairseq/examples`` without those (see its docstring). Nothing of fairseq is copied.
"""
import copy
import dataclasses
import importlib
import importlib.util
import sys
import types
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Tuple

import torch

import fairseq.examples


def _factory_defaults(cls):
    """Turn class-level dataclass-instance defaults of ``cls`` (``audio: D2vAudioConfig = D2vAudioConfig()``) into
    ``default_factory`` fields of copies: what Python >= 3.11 requires (mutable defaults, cf. fairseq#5012) and what
    fairseq-fixed did to fairseq's core configs but not to data2vec 2.0's."""
    for name in getattr(cls, "__annotations__", {}):
        value = cls.__dict__.get(name)
        if isinstance(value, dataclasses.Field):
            if dataclasses.is_dataclass(value.default) and not isinstance(value.default, type):
                value.default_factory = (lambda v: lambda: copy.deepcopy(v))(value.default)
                value.default = dataclasses.MISSING
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            setattr(cls, name, field(default_factory=(lambda v: lambda: copy.deepcopy(v))(value)))
    return cls


@contextmanager
def _dataclasses_accepting_config_defaults():
    """While data2vec 2.0's files import: ``dataclasses.dataclass`` first applies :func:`_factory_defaults`."""
    original = dataclasses.dataclass

    def patched(cls=None, /, **kwargs):
        if cls is None:
            return lambda c: original(_factory_defaults(c), **kwargs)
        return original(_factory_defaults(cls), **kwargs)

    dataclasses.dataclass = patched
    try:
        yield
    finally:
        dataclasses.dataclass = original


def import_data2vec2() -> types.ModuleType:
    """fairseq's ``data2vec2`` module (registers ``data2vec_multi``), imported as ``examples.data2vec.models.data2vec2``.

    Its files import ``examples.data2vec…`` (a top-level package only in a fairseq source checkout). Where no
    ``examples`` package is importable, the packages ``examples``, ``examples.data2vec``, ``…data`` and ``…models``
    are made bare (their folders in the installed ``fairseq/examples``, their ``__init__`` not run: ``data``'s
    imports torchvision's image datasets), and the data2vec 2.0 files load under those names, once; their config
    dataclasses get ``default_factory`` for their dataclass defaults (:func:`_factory_defaults`). timm (which
    data2vec 2.0's blocks build on) is a pinned requirement.
    """
    name = "examples.data2vec.models.data2vec2"
    if name in sys.modules:
        return sys.modules[name]
    if "examples" not in sys.modules and importlib.util.find_spec("examples") is None:
        root = Path(fairseq.examples.__file__).parent
        for package, folder in (("examples", root), ("examples.data2vec", root / "data2vec"),
                                ("examples.data2vec.data", root / "data2vec" / "data"),
                                ("examples.data2vec.models", root / "data2vec" / "models")):
            module = types.ModuleType(package)
            module.__path__ = [str(folder)]
            sys.modules[package] = module
    with _dataclasses_accepting_config_defaults():
        return importlib.import_module(name)


_d2v2 = import_data2vec2()
Modality = sys.modules["examples.data2vec.data.modality"].Modality
Data2VecMultiConfig, Data2VecMultiModel = _d2v2.Data2VecMultiConfig, _d2v2.Data2VecMultiModel

from fairseq.models import register_model  # noqa: E402

from .music2vec import Music2VecModel  # noqa: E402


@dataclass
class Music2Vec2Config(Data2VecMultiConfig):
    """data2vec 2.0 with audio as its modality and the music2vec paper's target settings as defaults."""

    supported_modality: Optional[Modality] = field(
        default=Modality.AUDIO, metadata={"help": "the modality trained (music2vec2: audio)"})
    average_top_k_layers: int = field(
        default=8, metadata={"help": "teacher layers averaged into the target (music2vec base: 8, Li et al. 2022 "
                                     "Table 1; data2vec 2.0 audio: 8, base_audio_only_task.yaml)"})
    instance_norm_target_layer: bool = field(
        default=True, metadata={"help": "instance-normalise each teacher layer over time before averaging "
                                        "(music2vec and data2vec 2.0 audio both do)"})


@register_model("music2vec2", dataclass=Music2Vec2Config)
class Music2Vec2Model(Data2VecMultiModel):
    """data2vec 2.0 student + EMA teacher on music audio (see module docstring)."""

    compute_var = staticmethod(Music2VecModel.compute_var)  # std across workers, CPU process groups too

    @property
    def audio_encoder(self):
        """The audio modality encoder (conv feature extractor, positional convolution, decoder)."""
        return self.modality_encoders[Modality.AUDIO.name]

    @property
    def feature_extractor(self):
        """The conv feature extractor (waveform (B, S) → (B, C_conv, T)), named as in wav2vec2-family models."""
        return self.audio_encoder.local_encoder

    def extract_hidden_states(self, source: torch.Tensor, padding_mask: Optional[torch.Tensor] = None
                              ) -> Tuple[List[torch.Tensor], Optional[torch.Tensor]]:
        """Every hidden state, unmasked (call in eval mode): index 0 the input of block 1 (CNN features projected,
        positional convolution added, layer norm), index i the output of block i.

        Args:
            source: (B, S) float waveform at 16 kHz.
            padding_mask: (B, S) bool, True on padded samples, or None.

        Returns:
            (hidden, frame_padding_mask): L + 1 tensors (B, T, C); (B, T) bool (True = padded) or None.
        """
        states: List[torch.Tensor] = []  # each (B, T, C): data2vec 2.0 blocks are batch-first
        hooks = [self.blocks[0].register_forward_pre_hook(lambda _m, args, *_: states.append(args[0]))]
        hooks += [block.register_forward_hook(lambda _m, _a, out: states.append(out[0])) for block in self.blocks]
        try:
            result = self(source, padding_mask=padding_mask, mask=False, features_only=True)
        finally:
            for hook in hooks:
                hook.remove()
        hidden = [state[:, : result["x"].size(1)] for state in states]
        hidden[-1] = result["x"]  # the final norm, where the model has one (post-LN blocks: none)
        frame_mask = result.get("padding_mask")
        if frame_mask is not None and not frame_mask.any():
            frame_mask = None
        return hidden, frame_mask
