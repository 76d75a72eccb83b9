"""A frozen encoder over a local transformers audio-model folder (wav2vec2 family, or remote code when allowed).

:class:`HFEncoder` has the attributes, ``__call__`` and ``encode_long`` of
:class:`music_ssl.checkpoint.FrozenEncoder`, so probing and HEAR treat an exported music2vec / MusicHuBERT
folder and a downloaded wav2vec2 / HuBERT / data2vec-audio / WavLM … folder (music2vec-v1 is a
``Data2VecAudioModel``) alike. The folder is loaded offline with ``AutoModel.from_pretrained(local_files_only=True)``
in float32 whatever dtype it was saved in (the encoder is fed float32 audio, as the fairseq one is).

Two kinds of folder:

* **native**: ``config.json`` names a ``model_type`` this transformers implements and describes a wav2vec2-family
  encoder (a conv feature encoder: ``conv_dim`` / ``conv_kernel`` / ``conv_stride``); loaded with
  ``trust_remote_code=False``.
* **remote code**: ``config.json`` has ``auto_map`` (the folder ships its own ``configuration_*.py`` /
  ``modeling_*.py``, e.g. MERT). Loading it *runs that Python code*, so it happens only when the caller passes
  ``trust_remote_code=True`` (probe config: ``source.trust_remote_code=true``); otherwise :func:`check_remote_code`
  refuses with one line naming the folder and the switch. It is never implied. The model must still describe its
  conv stack in ``config.json`` (MERT, a HuBERT subclass, does: that gives the frame rate and receptive field) and
  return ``hidden_states`` (L + 1 of them) when called with ``output_hidden_states=True``; a one-frame forward at
  load time checks both.

Sample rate (Hz): ``sampling_rate`` of the folder's ``preprocessor_config.json`` when present (MERT-v1: 24000),
else 16000 (with a warning). Callers resample audio to it (the probe does, with soxr; its feature cache is keyed by
it).

Hidden states follow the FrozenEncoder convention: L + 1 tensors, index 0 the Transformer input, index i the
output of layer i, and the last one is the encoder output (``last_hidden_state``: final layer norm applied for
pre-LN "stable layer norm" models; transformers ≥ 5 reports that state before the norm in ``hidden_states``).

Waveform normalisation, when ``preprocessor_config.json`` has ``do_normalize: true``: zero mean, unit variance
per input item over its valid samples (per clip in a batch; per whole file in ``encode_long``, before chunking),
``(x - mean) / sqrt(var + eps)`` with the biased variance. ``eps`` is 1e-7, exactly as transformers'
``Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm`` computes it (the features MARBLE and the model cards
compute), except for folders written by ``music-ssl-export-hf`` (they hold ``export_info.json``): those use
fairseq's ``task.normalize`` (``F.layer_norm``, eps 1e-5) so that the ``hf`` and ``checkpoint`` sources of one
model give the same features. The two differ only for very quiet audio (variance near eps).
"""
import contextlib
import json
import logging
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch

from ..checkpoint import FrozenEncoder
from ..core.conv import conv_frames, conv_geometry
from ..core.fingerprint import folder_sha256
from ..core.device import resolve_device
from ..core.errors import ExportError, one_line

logger = logging.getLogger(__name__)

# config, preprocessor config, weight files and (remote-code folders) the model's own Python code
HASHED_SUFFIXES = (".json", ".safetensors", ".bin", ".py")
DEFAULT_SAMPLE_RATE = 16000  # Hz, when a folder has no preprocessor_config.json (or no sampling_rate in it)
FEATURE_EXTRACTOR_EPS = 1e-7  # transformers Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm
FAIRSEQ_EPS = 1e-5  # fairseq task.normalize: F.layer_norm's default eps
EXPORT_MARKER = "export_info.json"  # written by music-ssl-export-hf beside the model
REMOTE_CODE_SWITCH = "source.trust_remote_code=true"
CONV_ATTRIBUTES = ("conv_dim", "conv_kernel", "conv_stride", "num_hidden_layers", "hidden_size")


class HFModelError(ExportError):
    """A folder that is not a usable transformers audio encoder; the message names the folder and the fix."""


class HFModelNotFoundError(HFModelError, FileNotFoundError):
    """A model folder (or its config.json) that does not exist."""


class RemoteCodeRefusedError(HFModelError):
    """A folder whose config.json asks for its own Python code (``auto_map``) without ``trust_remote_code``."""


def hf_hidden_states(model, audio: torch.Tensor, attention_mask: Optional[torch.Tensor] = None) -> List[torch.Tensor]:
    """Every hidden state of a transformers audio encoder: L + 1 tensors (B, T, C).

    Args:
        model: e.g. ``HubertModel`` / ``Data2VecAudioModel`` / ``Wav2Vec2Model`` (or a remote-code model returning
            ``hidden_states``) in eval mode.
        audio: (B, S) float waveform (already normalised if the model expects it).
        attention_mask: (B, S) int/bool, 1 on valid samples, or None.

    Raises:
        HFModelError: the model's output has no ``hidden_states``.
    """
    out = model(audio, attention_mask=attention_mask, output_hidden_states=True)
    states = getattr(out, "hidden_states", None)
    if states is None:
        raise HFModelError(f"{type(model).__name__} returned no hidden_states when called with "
                           f"output_hidden_states=True; probe a model whose forward returns them.")
    hidden = list(states)
    last = getattr(out, "last_hidden_state", None)
    if last is not None and last.shape == hidden[-1].shape:
        hidden[-1] = last  # the encoder output (normed for pre-LN models)
    return hidden


def read_json(path: Path) -> dict:
    """A folder's JSON file as a dict; :class:`HFModelError` naming it when it is not valid JSON."""
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise HFModelError(f"{path}: not valid JSON ({err}); re-export or re-download the model.") from err


def read_preprocessor(folder: Path, warn: bool = True) -> tuple:
    """(sample_rate Hz, do_normalize) from ``preprocessor_config.json``'s ``sampling_rate`` / ``do_normalize``;
    (16000, False) when the file is absent (with a warning if ``warn``); 16000 when it has no ``sampling_rate``."""
    path = Path(folder) / "preprocessor_config.json"
    if not path.is_file():
        if warn:
            logger.warning("%s: no preprocessor_config.json; assuming %d Hz and no waveform normalisation", folder,
                           DEFAULT_SAMPLE_RATE)
        return DEFAULT_SAMPLE_RATE, False
    config = read_json(path)
    return int(config.get("sampling_rate", DEFAULT_SAMPLE_RATE)), bool(config.get("do_normalize", False))


def normalization_eps(folder: Path) -> float:
    """The eps of the waveform normalisation (module docstring): fairseq's for our exports, else the
    transformers feature extractor's."""
    return FAIRSEQ_EPS if (Path(folder) / EXPORT_MARKER).is_file() else FEATURE_EXTRACTOR_EPS


def zero_mean_unit_var(audio: torch.Tensor, eps: float) -> torch.Tensor:
    """``(audio - mean) / sqrt(var + eps)`` over the last axis (biased variance), as transformers'
    ``Wav2Vec2FeatureExtractor`` (eps 1e-7) and ``F.layer_norm`` without weights (eps 1e-5) compute it.
    audio: (..., S) float32 → same shape."""
    mean = audio.mean(-1, keepdim=True)
    return (audio - mean) / torch.sqrt(audio.var(-1, unbiased=False, keepdim=True) + eps)


def needs_remote_code(folder: Path) -> bool:
    """Whether ``config.json`` has ``auto_map`` (the folder's own configuration / modeling Python files); False
    for a missing or unreadable config.json (the config loader then says what is wrong with it)."""
    path = Path(folder) / "config.json"
    try:
        config = json.loads(path.read_text()) if path.is_file() else {}
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False
    return isinstance(config, dict) and bool(config.get("auto_map"))


def check_remote_code(folder: Path, trust_remote_code: bool) -> bool:
    """Refuse a remote-code folder unless ``trust_remote_code``; returns whether the folder is one.

    Raises:
        RemoteCodeRefusedError: ``config.json`` has ``auto_map`` and ``trust_remote_code`` is false.
    """
    remote = needs_remote_code(folder)
    if remote and not trust_remote_code:
        files = ", ".join(sorted(p.name for p in Path(folder).glob("*.py"))) or "no .py file present"
        raise RemoteCodeRefusedError(
            f"{folder}: config.json has auto_map: loading this model runs the folder's own Python code ({files}); "
            f"read that code, then set {REMOTE_CODE_SWITCH} (HFEncoder.from_pretrained(..., trust_remote_code=True)) "
            f"if you trust it.")
    return remote


def remote_code_failed(folder: Path, what: str, err: BaseException) -> str:
    """The one line for a remote-code folder whose own ``what`` (configuration / model) code failed to load."""
    import transformers

    return (f"{folder}: the folder's own {what} code failed ({one_line(err)}); it may need another package or the "
            f"transformers version it was written for (installed: {transformers.__version__}).")


def read_config(folder: Path, trust_remote_code: bool = False):
    """The folder's transformers config; raises unless it describes a wav2vec2-family audio encoder (native), or a
    remote-code model with a conv stack in its config (``trust_remote_code`` and ``auto_map``)."""
    from transformers import AutoConfig

    if not (folder / "config.json").is_file():
        raise HFModelNotFoundError(f"{folder}: no config.json; pass a transformers model folder (e.g. written by "
                                f"music-ssl-export-hf or downloaded with huggingface-cli download).")
    remote = check_remote_code(folder, trust_remote_code)
    try:  # trust_remote_code is always passed explicitly: None would make transformers prompt on a terminal
        config = AutoConfig.from_pretrained(str(folder), local_files_only=True, trust_remote_code=remote)
    except Exception as err:  # invalid JSON, unknown model_type, or (remote) whatever the folder's code raised
        if remote:
            raise HFModelError(remote_code_failed(folder, "configuration", err)) from err
        if not isinstance(err, (OSError, ValueError)):
            raise
        raise HFModelError(f"{folder}: config.json is not a config this transformers knows "
                           f"({one_line(err)}); re-export or re-download the folder.") from err
    missing = [a for a in CONV_ATTRIBUTES if not hasattr(config, a)]
    if missing and remote:
        raise HFModelError(f"{folder}: the remote-code config ({type(config).__name__}) lacks {', '.join(missing)}; "
                           f"music-ssl needs a conv feature encoder described in config.json (as MERT's is) to "
                           f"know the frame rate.")
    if missing:
        raise HFModelError(f"{folder}: model_type '{config.model_type}' is not a wav2vec2-family audio encoder "
                           f"(needs a conv feature encoder: wav2vec2, hubert, data2vec-audio, wavlm, ...).")
    if getattr(config, "add_adapter", False):
        raise HFModelError(f"{folder}: config.add_adapter=true changes the encoder output; use a model without "
                           f"an adapter.")
    return config


class HFEncoder(FrozenEncoder):
    """A frozen transformers audio encoder giving every hidden state (FrozenEncoder interface).

    Attributes: ``sample_rate`` (Hz), ``normalize``, ``norm_eps``, ``frame_rate`` (Hz), ``num_layers`` (L),
    ``dim`` (C), ``sha256`` (config, code and weight files), ``remote_code`` (the folder's own code was loaded),
    ``device``, ``model`` (the transformers model).
    """

    def __init__(self, model, sample_rate: int, normalize: bool, sha256: str, device: torch.device,
                 norm_eps: float = FEATURE_EXTRACTOR_EPS, remote_code: bool = False):
        config = model.config
        self.model = model.eval().to(device)
        self.device, self.sha256 = device, sha256
        self.sample_rate, self.normalize, self.norm_eps = int(sample_rate), bool(normalize), float(norm_eps)
        self.remote_code = bool(remote_code)
        # the conv stack in fairseq's spec format, so FrozenEncoder.frames and conv_geometry serve both
        self.conv_layers = repr(list(zip(config.conv_dim, config.conv_kernel, config.conv_stride)))
        self.receptive_field, self.stride = conv_geometry(self.conv_layers)
        self.frame_rate = self.sample_rate / self.stride
        self.num_layers = int(config.num_hidden_layers)
        self.dim = int(config.hidden_size)
        self.cnn = False  # FrozenEncoder's raw-conv-output mode is not offered for transformers folders
        self.num_states = self.num_layers + 1

    @classmethod
    def from_pretrained(cls, model_dir, device=None, trust_remote_code: bool = False) -> "HFEncoder":
        """Load a local transformers model folder (config.json + weights) on ``device`` (default CUDA if present).

        ``trust_remote_code``: allow a folder whose config.json has ``auto_map`` to run its own Python code
        (default False: such a folder raises :class:`RemoteCodeRefusedError`).
        """
        from transformers import AutoModel

        folder = Path(model_dir)
        config = read_config(folder, trust_remote_code)
        remote = needs_remote_code(folder)
        try:
            model = AutoModel.from_pretrained(str(folder), config=config, local_files_only=True, dtype=torch.float32,
                                              trust_remote_code=remote)
        except Exception as err:  # no / unreadable weights, weights not matching the config, (remote) its code
            if remote and not isinstance(err, OSError):
                raise HFModelError(remote_code_failed(folder, "model", err)) from err
            if not isinstance(err, (OSError, ValueError)):
                raise
            raise HFModelError(f"{folder}: cannot load the weights ({one_line(err)}); re-export "
                               f"or re-download the folder.") from err
        device = resolve_device(device)
        sample_rate, normalize = read_preprocessor(folder)
        logger.info("%s: %s%s, %d layers x %d, %d Hz", folder, type(model).__name__, " (remote code)" if remote else "",
                    config.num_hidden_layers, config.hidden_size, sample_rate)
        encoder = cls(model, sample_rate, normalize, folder_sha256(folder, HASHED_SUFFIXES), device,
                      normalization_eps(folder), remote)
        if remote:
            encoder.check_outputs(folder)
        return encoder

    def check_outputs(self, folder: Path) -> None:
        """One forward pass of 1 s of silence: the model must return L + 1 hidden states of (1, frames, C) as its
        config.json says (a remote-code model's output is otherwise unknown)."""
        samples = max(self.receptive_field, self.sample_rate)
        with torch.no_grad():
            hidden = hf_hidden_states(self.model, torch.zeros(1, samples, device=self.device))
        frames = int(conv_frames(torch.tensor(samples), self.conv_layers))
        shapes = [tuple(h.shape) for h in hidden]
        if len(hidden) != self.num_states or any(s != (1, frames, self.dim) for s in shapes):
            raise HFModelError(f"{folder}: {type(self.model).__name__} returned {len(hidden)} hidden states of shapes "
                               f"{sorted(set(shapes))}; its config.json says {self.num_states} (num_hidden_layers + 1) "
                               f"of (1, {frames}, {self.dim}); music-ssl cannot probe this model as it is.")

    def hidden_states(self, audio: torch.Tensor) -> List[torch.Tensor]:
        """Every hidden state of an unpadded batch: audio (B, S) prepared → L + 1 tensors (B, T, C)."""
        return hf_hidden_states(self.model, audio)

    def prepare(self, audio: torch.Tensor, lengths: torch.Tensor, padding: torch.Tensor,
                normalize: bool) -> torch.Tensor:
        """Zero the padding and, if ``normalize``, normalise each item over its valid samples with ``norm_eps``."""
        audio = audio.masked_fill(padding, 0.0)
        if normalize:
            for i, n in enumerate(lengths.tolist()):
                audio[i, :n] = zero_mean_unit_var(audio[i, :n], self.norm_eps)
        return audio

    def encode_long(self, audio: np.ndarray, chunk_seconds: float = 30.0, layers=None,
                    batch_chunks: int = 4) -> List[np.ndarray]:
        """:meth:`FrozenEncoder.encode_long` with this folder's normalisation: the whole file (S,) is normalised
        once with ``norm_eps``, then encoded in chunks without normalising again."""
        if not self.normalize:
            return super().encode_long(audio, chunk_seconds, layers, batch_chunks)
        wav = zero_mean_unit_var(torch.as_tensor(np.asarray(audio, dtype=np.float32)), self.norm_eps)
        with self.normalization_off():
            return super().encode_long(wav.numpy(), chunk_seconds, layers, batch_chunks)

    @contextlib.contextmanager
    def normalization_off(self):
        """``normalize`` set to False for the duration (the audio inside is already normalised)."""
        normalize, self.normalize = self.normalize, False
        try:
            yield
        finally:
            self.normalize = normalize
