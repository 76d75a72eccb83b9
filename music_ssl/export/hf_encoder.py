"""A frozen encoder over a local transformers wav2vec2-family model folder.

:class:`HFEncoder` has the attributes, ``__call__`` and ``encode_long`` of
:class:`music_ssl.checkpoint.FrozenEncoder`, so probing and HEAR treat an exported music2vec / MusicHuBERT
folder and a downloaded wav2vec2 / HuBERT / data2vec-audio / WavLM … folder alike. The folder is loaded with
``AutoModel.from_pretrained(local_files_only=True)`` (never remote code), in float32 whatever dtype it was
saved in (the encoder is fed float32 audio, as the fairseq one is).

Hidden states follow the FrozenEncoder convention: L + 1 tensors, index 0 the Transformer input, index i the
output of layer i, and the last one is the encoder output (final layer norm applied for pre-LN
"stable layer norm" models; transformers ≥ 5 reports that state before the norm in ``hidden_states``).
Waveform normalisation (``do_normalize`` in ``preprocessor_config.json``) is applied inside, per item over
its valid samples, as fairseq's ``task.normalize`` does (layer norm, eps 1e-5; the transformers feature
extractor uses eps 1e-7, a difference far below the parity tolerance for real audio).
"""
import json
import logging
from pathlib import Path
from typing import List, Optional

import torch

from ..checkpoint import FrozenEncoder
from ..core.conv import conv_geometry
from ..core.fingerprint import folder_sha256
from ..core.device import resolve_device
from ..core.errors import ExportError, one_line

logger = logging.getLogger(__name__)

HASHED_SUFFIXES = (".json", ".safetensors", ".bin")  # config, preprocessor config and weight files


class HFModelError(ExportError):
    """A folder that is not a usable transformers audio encoder; the message names the folder and the fix."""


class HFModelNotFoundError(HFModelError, FileNotFoundError):
    """A model folder (or its config.json) that does not exist."""


def hf_hidden_states(model, audio: torch.Tensor, attention_mask: Optional[torch.Tensor] = None) -> List[torch.Tensor]:
    """Every hidden state of a transformers wav2vec2-family model: L + 1 tensors (B, T, C).

    Args:
        model: e.g. ``HubertModel`` / ``Data2VecAudioModel`` / ``Wav2Vec2Model`` in eval mode.
        audio: (B, S) float waveform (already normalised if the model expects it).
        attention_mask: (B, S) int/bool, 1 on valid samples, or None.
    """
    out = model(audio, attention_mask=attention_mask, output_hidden_states=True)
    hidden = list(out.hidden_states)
    hidden[-1] = out.last_hidden_state  # the encoder output (normed for pre-LN models)
    return hidden


def read_preprocessor(folder: Path) -> tuple:
    """(sample_rate, do_normalize) from ``preprocessor_config.json``; (16000, False) with a warning if absent."""
    path = folder / "preprocessor_config.json"
    if not path.is_file():
        logger.warning("%s: no preprocessor_config.json; assuming 16000 Hz and no waveform normalisation", folder)
        return 16000, False
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise HFModelError(f"{path}: not valid JSON ({err}); re-export or re-download the model.") from err
    return int(config.get("sampling_rate", 16000)), bool(config.get("do_normalize", False))


def read_config(folder: Path):
    """The folder's transformers config; raises unless it describes a wav2vec2-family audio encoder."""
    from transformers import AutoConfig

    if not (folder / "config.json").is_file():
        raise HFModelNotFoundError(f"{folder}: no config.json; pass a transformers model folder (e.g. written by "
                                f"music-ssl-export-hf or downloaded with huggingface-cli download).")
    try:
        config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as err:  # invalid JSON, unknown model_type
        raise HFModelError(f"{folder}: config.json is not a config this transformers knows "
                           f"({one_line(err)}); re-export or re-download the folder.") from err
    if not all(hasattr(config, a) for a in ("conv_dim", "conv_kernel", "conv_stride", "num_hidden_layers",
                                            "hidden_size")):
        raise HFModelError(f"{folder}: model_type '{config.model_type}' is not a wav2vec2-family audio encoder "
                           f"(needs a conv feature encoder: wav2vec2, hubert, data2vec-audio, wavlm, ...).")
    if getattr(config, "add_adapter", False):
        raise HFModelError(f"{folder}: config.add_adapter=true changes the encoder output; use a model without "
                           f"an adapter.")
    return config


class HFEncoder(FrozenEncoder):
    """A frozen transformers wav2vec2-family encoder giving every hidden state (FrozenEncoder interface).

    Attributes: ``sample_rate`` (Hz), ``normalize``, ``frame_rate`` (Hz), ``num_layers`` (L), ``dim`` (C),
    ``sha256`` (config + weight files), ``device``, ``model`` (the transformers model).
    """

    def __init__(self, model, sample_rate: int, normalize: bool, sha256: str, device: torch.device):
        config = model.config
        self.model = model.eval().to(device)
        self.device, self.sha256 = device, sha256
        self.sample_rate, self.normalize = int(sample_rate), bool(normalize)
        # the conv stack in fairseq's spec format, so FrozenEncoder.frames and conv_geometry serve both
        self.conv_layers = repr(list(zip(config.conv_dim, config.conv_kernel, config.conv_stride)))
        self.receptive_field, self.stride = conv_geometry(self.conv_layers)
        self.frame_rate = self.sample_rate / self.stride
        self.num_layers = int(config.num_hidden_layers)
        self.dim = int(config.hidden_size)
        self.cnn = False  # FrozenEncoder's raw-conv-output mode is not offered for transformers folders
        self.num_states = self.num_layers + 1

    @classmethod
    def from_pretrained(cls, model_dir, device=None) -> "HFEncoder":
        """Load a local transformers model folder (config.json + weights) on ``device`` (default CUDA if present)."""
        from transformers import AutoModel

        folder = Path(model_dir)
        config = read_config(folder)
        try:
            model = AutoModel.from_pretrained(str(folder), config=config, local_files_only=True, dtype=torch.float32)
        except (OSError, ValueError) as err:  # no / unreadable weight file, weights not matching the config
            raise HFModelError(f"{folder}: cannot load the weights ({one_line(err)}); re-export "
                               f"or re-download the folder.") from err
        device = resolve_device(device)
        sample_rate, normalize = read_preprocessor(folder)
        logger.info("%s: %s, %d layers x %d, %d Hz", folder, type(model).__name__, config.num_hidden_layers,
                    config.hidden_size, sample_rate)
        return cls(model, sample_rate, normalize, folder_sha256(folder, HASHED_SUFFIXES), device)

    def hidden_states(self, audio: torch.Tensor) -> List[torch.Tensor]:
        """Every hidden state of an unpadded batch: audio (B, S) prepared → L + 1 tensors (B, T, C)."""
        return hf_hidden_states(self.model, audio)
