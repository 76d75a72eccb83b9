"""Strict fairseq → Hugging Face transformers converters for wav2vec2-family encoders and music2vec2.

==================================  ===============================  =====================
fairseq ``cfg.model._name``         transformers class               ``config.model_type``
==================================  ===============================  =====================
``music_hubert``, ``hubert``        ``HubertModel``                  ``hubert``
``music2vec``, ``data2vec_audio``   ``Data2VecAudioModel``           ``data2vec-audio``
``music2vec2``                      ``Music2Vec2Model`` (own code)   ``music2vec2``
==================================  ===============================  =====================

The transformers config is inferred from the checkpoint's ``cfg.model``: every fairseq key is in one table —
renamed (``CONFIG_RENAMED``), derived (``CONFIG_DERIVED``: conv stack, activation, norms, positional convs),
required to hold the one value transformers has (``CONFIG_REQUIRED``) or without effect on the encoder's
hidden states (``CONFIG_UNUSED``: pretraining, teacher and conformer settings). A key in no table raises, as
does an architecture value transformers cannot express. Every weight is renamed by an explicit rule table; a
weight no rule names raises, and so does a transformers weight nothing filled. The only weights dropped are
the pretraining-only heads, which transformers' bare encoder classes do not have:

* HuBERT: ``label_embs_concat`` (cluster embeddings), ``final_proj`` (prediction projection), ``target_glu``;
* data2vec / music2vec: ``final_proj`` (regression head) and ``_ema`` (the EMA teacher's weights).

The mask embedding (``mask_emb``) is kept as ``masked_spec_embed``; transformers' fine-tuning SpecAugment
settings (``mask_time_prob`` …) keep their transformers defaults, they are not pretraining settings.
The HuBERT positional convolution is weight-normed: fairseq's ``nn.utils.weight_norm`` stores
``weight_g``/``weight_v``, a fairseq on ``nn.utils.parametrizations.weight_norm`` stores
``parametrizations.weight.original0/1``; both are read and written in the form transformers builds with the
installed torch (``parametrizations`` for torch ≥ 2.1).

**music2vec2** (data2vec 2.0: our subclass of fairseq's ``data2vec_multi``, audio) has no transformers class. Its
export is a *remote-code* folder: the converter writes ``configuration_music2vec2.py`` and ``modeling_music2vec2.py``
(this package's own files, torch + transformers only; read them for the architecture) beside the weights and names
them in config.json's ``auto_map``, so ``AutoModel.from_pretrained(OUT_DIR, trust_remote_code=True)`` builds
``Music2Vec2Model`` (``HFEncoder.from_pretrained(OUT_DIR, trust_remote_code=True)``, probe
``source.trust_remote_code=true``). config.json describes the conv stack as transformers' wav2vec2 family does
(``conv_dim`` / ``conv_kernel`` / ``conv_stride``). The same strictness holds: every ``cfg.model`` key and every key
of ``cfg.model.modalities.audio`` is in one of the ``M2V2_*`` tables (the image and text modality configs, never
built for an audio model, are not read), ``supported_modality`` must be ``AUDIO``, ``num_extra_tokens`` 0 and
``learned_alibi`` false; every weight is renamed by ``M2V2_RULES``. Dropped: the EMA teacher (``_ema``) and the
decoders (``modality_encoders.AUDIO.decoder``, ``shared_decoder``, ``recon_proj``): pretraining only. The ALiBi
scale (``alibi_scale``, learned, per head) is kept as ``encoder.alibi_scale``. Hidden states: L + 1, index 0 the input
of block 1, as ``Music2Vec2Model.extract_hidden_states`` gives them (the parity check compares exactly those).

The folder also gets ``preprocessor_config.json`` (``Wav2Vec2FeatureExtractor`` with the task's sample rate
and ``do_normalize`` = ``task.normalize``) and ``export_info.json`` (source checkpoint, its SHA-256, dropped
keys, the parity check result when run).
"""
import json
import logging
import os
import re
import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch

from ..checkpoint import CheckpointError, read_fairseq_state  # noqa: F401 (CheckpointError re-exported)
from ..core.conv import conv_layers
from ..core.fingerprint import file_sha256
from ..core.atomic import disk_errors, file_mode, remove_stale_temporaries, require_space, temporary_path
from ..core.errors import ExportError

logger = logging.getLogger(__name__)

HUBERT_NAMES = ("hubert", "music_hubert")
DATA2VEC_NAMES = ("data2vec_audio", "music2vec")
MUSIC2VEC2_NAMES = ("music2vec2",)  # data2vec 2.0 audio models: remote-code export (see the module docstring)

# fairseq activation_fn -> transformers ACT2FN name (same function)
ACTIVATIONS = {"gelu": "gelu", "relu": "relu", "gelu_accurate": "gelu_accurate", "gelu_fast": "gelu_accurate",
               "tanh": "tanh", "linear": "linear", "swish": "silu"}

# Every fairseq model config key is accounted for; a key in none of these tables raises (it may change the
# encoder, e.g. a field added by a newer fairseq). A renamed key absent from the checkpoint raises; an absent
# required key, or an absent pos_conv_depth (HuBERT configs have none), is taken to hold fairseq's default.
CONFIG_RENAMED = {  # fairseq key -> transformers key, same value
    "encoder_embed_dim": "hidden_size", "encoder_layers": "num_hidden_layers",
    "encoder_attention_heads": "num_attention_heads", "encoder_ffn_embed_dim": "intermediate_size",
    "conv_bias": "conv_bias", "conv_pos_groups": "num_conv_pos_embedding_groups", "dropout": "hidden_dropout",
    "attention_dropout": "attention_dropout", "activation_dropout": "activation_dropout",
    "dropout_input": "feat_proj_dropout", "encoder_layerdrop": "layerdrop",
}
CONFIG_DERIVED = ("_name", "conv_feature_layers", "activation_fn", "extractor_mode", "layer_norm_first",
                  "conv_pos", "pos_conv_depth")  # read by common_config / hf_config
CONFIG_REQUIRED = {"layer_type": "transformer", "conv_pos_batch_norm": False}  # the only values transformers has
CONFIG_UNUSED = (  # no effect on the bare encoder's hidden states in eval mode
    # pretraining: masking (transformers' fine-tuning SpecAugment keeps its own defaults), heads, losses
    "mask_prob", "mask_length", "mask_selection", "mask_other", "no_mask_overlap", "mask_min_space",
    "mask_channel_prob", "mask_channel_length", "mask_channel_selection", "mask_channel_other",
    "no_mask_channel_overlap", "mask_channel_min_space", "mask_channel_before", "mask_dropout",
    "require_same_masks", "feature_grad_mult", "dropout_features", "checkpoint_activations", "final_dim",
    "untie_final_proj", "target_glu", "logit_temp", "label_rate", "skip_masked", "skip_nomask",
    # data2vec teacher and targets
    "average_top_k_layers", "layer_norm_target_layer", "instance_norm_target_layer", "instance_norm_targets",
    "layer_norm_targets", "batch_norm_target_layer", "group_norm_target_layer", "ema_decay", "ema_end_decay",
    "ema_anneal_end_step", "ema_transformer_only", "ema_layers_only", "max_update", "min_target_var",
    "min_pred_var", "loss_beta", "loss_scale",
    # wav2vec2 fields data2vec-audio inherits but never reads (quantizer, negatives, cropping, length limit)
    "latent_temp", "latent_vars", "latent_groups", "latent_dim", "quantize_targets", "quantize_input",
    "same_quantizer", "quantizer_depth", "quantizer_factor", "num_negatives", "negatives_from_everywhere",
    "cross_sample_negatives", "codebook_negatives", "crop_seq_to_multiple", "max_positions",
    # the encoder pads its input to this multiple and masks the padding: no effect on valid frames
    "required_seq_len_multiple",
    # music-ssl speed options (music_ssl/models/fast_paths.py, masking.py): equal hidden states in fp32 eval
    "sdpa_attention", "pos_conv_fp32", "seeded_masks", "mask_seed",
    # conformer / adapter layers only (layer_type must be "transformer")
    "depthwise_conv_kernel_size", "attn_type", "pos_enc_type", "fp16", "adp_num", "adp_dim", "adp_act_fn",
    "adp_trf_idx",
)

PRETRAINING_ONLY = {  # fairseq weights with no counterpart in transformers' bare encoders (see module docstring)
    "hubert": (r"label_embs_concat", r"final_proj\.(weight|bias)", r"target_glu\..*"),
    "data2vec-audio": (r"final_proj\.(weight|bias)", r"_ema"),
}

ENCODER_RULES = [  # (fairseq key regex, transformers key template), shared by both families
    (r"mask_emb", "masked_spec_embed"),
    (r"feature_extractor\.conv_layers\.(\d+)\.0\.(weight|bias)", "feature_extractor.conv_layers.{0}.conv.{1}"),
    (r"layer_norm\.(weight|bias)", "feature_projection.layer_norm.{0}"),
    (r"post_extract_proj\.(weight|bias)", "feature_projection.projection.{0}"),
    (r"encoder\.layer_norm\.(weight|bias)", "encoder.layer_norm.{0}"),
    (r"encoder\.layers\.(\d+)\.self_attn\.(k|v|q|out)_proj\.(weight|bias)",
     "encoder.layers.{0}.attention.{1}_proj.{2}"),
    (r"encoder\.layers\.(\d+)\.self_attn_layer_norm\.(weight|bias)", "encoder.layers.{0}.layer_norm.{1}"),
    (r"encoder\.layers\.(\d+)\.fc1\.(weight|bias)", "encoder.layers.{0}.feed_forward.intermediate_dense.{1}"),
    (r"encoder\.layers\.(\d+)\.fc2\.(weight|bias)", "encoder.layers.{0}.feed_forward.output_dense.{1}"),
    (r"encoder\.layers\.(\d+)\.final_layer_norm\.(weight|bias)", "encoder.layers.{0}.final_layer_norm.{1}"),
]
GROUP_NORM_RULES = [(r"feature_extractor\.conv_layers\.0\.2\.(weight|bias)",
                     "feature_extractor.conv_layers.0.layer_norm.{0}")]
LAYER_NORM_RULES = [(r"feature_extractor\.conv_layers\.(\d+)\.2\.1\.(weight|bias)",
                     "feature_extractor.conv_layers.{0}.layer_norm.{1}")]
# weight-normed positional conv: g (norm) and v (direction); {g}/{v} become the names the installed torch uses
HUBERT_POS_CONV_RULES = [
    (r"encoder\.pos_conv\.0\.(weight_g|parametrizations\.weight\.original0)", "encoder.pos_conv_embed.conv.{g}"),
    (r"encoder\.pos_conv\.0\.(weight_v|parametrizations\.weight\.original1)", "encoder.pos_conv_embed.conv.{v}"),
    (r"encoder\.pos_conv\.0\.bias", "encoder.pos_conv_embed.conv.bias"),
]
DATA2VEC_POS_CONV_RULES = [(r"encoder\.pos_conv\.(\d+)\.0\.(weight|bias)",
                            "encoder.pos_conv_embed.layers.{0}.conv.{1}")]


@dataclass
class Conversion:
    """A converted model and what the conversion did."""

    model: torch.nn.Module                 # transformers HubertModel / Data2VecAudioModel / Music2Vec2Model, eval
    sample_rate: int                        # Hz, from the task config
    normalize: bool                         # task.normalize (waveform layer norm before the model)
    fairseq_name: str                       # cfg.model._name of the source
    dropped: List[str] = field(default_factory=list)  # pretraining-only fairseq keys left out


def family(model_name: str, path) -> str:
    """transformers model_type for a fairseq model name; raises for names with no converter."""
    if model_name in HUBERT_NAMES:
        return "hubert"
    if model_name in DATA2VEC_NAMES:
        return "data2vec-audio"
    if model_name in MUSIC2VEC2_NAMES:
        return "music2vec2"
    raise ExportError(f"{path}: model '{model_name}' has no transformers converter; supported: "
                      f"{', '.join(HUBERT_NAMES + DATA2VEC_NAMES + MUSIC2VEC2_NAMES)}.")


def require(ok: bool, path, message: str) -> None:
    if not ok:
        raise ExportError(f"{path}: {message}")


def check_config_keys(cfg, path) -> None:
    """Raise for a model config key in no table, a missing renamed key, or a required key with another value."""
    known = set(CONFIG_RENAMED) | set(CONFIG_DERIVED) | set(CONFIG_REQUIRED) | set(CONFIG_UNUSED)
    unknown = sorted(set(cfg.keys()) - known)
    require(not unknown, path, f"model config keys the converter does not know: {unknown}; they may change the "
            f"encoder: check what each does and add it to a table in music_ssl/export/hf.py.")
    missing = sorted(k for k in CONFIG_RENAMED if k not in cfg)
    require(not missing, path, f"model config lacks {missing}; re-save the checkpoint with a current fairseq.")
    for key, value in CONFIG_REQUIRED.items():
        actual = cfg.get(key, value)  # fairseq choice fields may be StrEnum members: compare their values
        require(str(actual) == str(value), path, f"{key}={actual} has no transformers counterpart "
                f"(only {key}={value} converts).")


def common_config(cfg, path) -> dict:
    """transformers config fields shared by HuBERT and data2vec-audio, from a fairseq model config."""
    check_config_keys(cfg, path)
    layers = conv_layers(cfg.conv_feature_layers)  # [(dim, kernel, stride)]
    activation = str(cfg.activation_fn)
    require(activation in ACTIVATIONS, path, f"activation_fn={activation} has no transformers "
            f"counterpart; supported: {', '.join(ACTIVATIONS)}.")
    return dict(
        **{hf_key: cfg[key] for key, hf_key in CONFIG_RENAMED.items()},
        hidden_act=ACTIVATIONS[activation], feat_extract_activation="gelu",  # fairseq's conv stack: nn.GELU
        conv_dim=[d for d, _, _ in layers], conv_kernel=[k for _, k, _ in layers],
        conv_stride=[s for _, _, s in layers], layer_norm_eps=1e-5,  # fairseq LayerNorm's eps
    )


def hf_config(cfg, path):
    """The transformers config equivalent to fairseq model config ``cfg`` (raises on unsupported values)."""
    from transformers import Data2VecAudioConfig, HubertConfig

    kind = family(cfg._name, path)
    fields = common_config(cfg, path)
    depth = int(cfg.get("pos_conv_depth", 1))
    extractor = str(cfg.extractor_mode)
    if kind == "hubert":
        require(depth == 1, path, f"pos_conv_depth={depth}: transformers' HubertModel has one positional conv.")
        require(extractor in ("default", "layer_norm"), path, f"extractor_mode={extractor} is unknown.")
        return HubertConfig(
            **fields, feat_extract_norm="group" if extractor == "default" else "layer",
            feat_proj_layer_norm=True, do_stable_layer_norm=bool(cfg.layer_norm_first),
            num_conv_pos_embeddings=int(cfg.conv_pos), architectures=["HubertModel"])
    require(extractor == "layer_norm", path, f"extractor_mode={extractor}: transformers' Data2VecAudioModel has "
            f"a layer-norm conv stack only.")
    require(not cfg.layer_norm_first, path, "layer_norm_first=true: transformers' Data2VecAudioModel is post-LN only.")
    require(depth > 1, path, "pos_conv_depth=1: transformers' Data2VecAudioModel needs stacked positional convs.")
    return Data2VecAudioConfig(
        **fields, num_conv_pos_embeddings=depth, conv_pos_kernel_size=max(3, int(cfg.conv_pos) // depth),
        architectures=["Data2VecAudioModel"])  # fairseq's kernel per stacked conv: max(3, conv_pos // depth)


def rename_rules(kind: str, cfg, hf_keys) -> List[Tuple[str, str]]:
    """The (regex, template) table for one model family and extractor mode."""
    rules = list(ENCODER_RULES)
    rules += GROUP_NORM_RULES if str(cfg.extractor_mode) == "default" else LAYER_NORM_RULES
    if kind == "data2vec-audio":
        return rules + DATA2VEC_POS_CONV_RULES
    parametrized = "encoder.pos_conv_embed.conv.parametrizations.weight.original0" in hf_keys
    g, v = ("parametrizations.weight.original0", "parametrizations.weight.original1") if parametrized \
        else ("weight_g", "weight_v")
    return rules + [(regex, template.replace("{g}", g).replace("{v}", v)) for regex, template in HUBERT_POS_CONV_RULES]


def rename(key: str, rules) -> Optional[str]:
    """The new name of ``key`` by the first rule whose regex matches it whole (template: a format string of the
    groups, or a function of the match); None when no rule does."""
    for regex, template in rules:
        match = re.fullmatch(regex, key)
        if match:
            return template(match) if callable(template) else template.format(*match.groups())
    return None


def convert_state_dict(state: Dict[str, torch.Tensor], cfg, hf_state: Dict[str, torch.Tensor], path
                       ) -> Tuple[Dict[str, torch.Tensor], List[str]]:
    """Rename fairseq weights to transformers names; returns (new state dict, dropped pretraining-only keys).

    Raises :class:`ExportError` for a fairseq key no rule names, a transformers key nothing fills, or a
    shape mismatch. A model whose conv width equals the encoder width has no ``post_extract_proj`` in
    fairseq; transformers always projects, so that projection is written as the identity.
    """
    kind = family(cfg._name, path)
    rules = rename_rules(kind, cfg, hf_state)
    dropped = [k for k in state if any(re.fullmatch(p, k) for p in PRETRAINING_ONLY[kind])]
    out, unknown = {}, []
    for key, value in state.items():
        if key in dropped:
            continue
        new = rename(key, rules)
        if new is None:
            unknown.append(key)
        else:
            out[new] = value
    require(not unknown, path, f"weights with no transformers counterpart: {unknown[:8]} ({len(unknown)} in all); "
            f"the converter maps only the {'/'.join(HUBERT_NAMES + DATA2VEC_NAMES)} encoder and their "
            f"pretraining heads: drop extra modules from the state dict before exporting.")
    if "post_extract_proj.weight" not in state:
        weight = hf_state["feature_projection.projection.weight"]
        out["feature_projection.projection.weight"] = torch.eye(*weight.shape, dtype=weight.dtype)
        out["feature_projection.projection.bias"] = torch.zeros(weight.shape[0], dtype=weight.dtype)
    missing, extra = sorted(set(hf_state) - set(out)), sorted(set(out) - set(hf_state))
    require(not missing and not extra, path, f"weights do not match the inferred transformers architecture: "
            f"missing {missing[:8]}, unexpected {extra[:8]}.")
    wrong = [k for k in out if tuple(out[k].shape) != tuple(hf_state[k].shape)]
    shapes = [(k, tuple(out[k].shape), tuple(hf_state[k].shape)) for k in wrong[:4]]
    require(not wrong, path, f"shape mismatch (name, fairseq, transformers) for {shapes}.")
    return out, dropped


def convert_checkpoint(path) -> Conversion:
    """Build the transformers model equivalent to fairseq checkpoint ``path`` (weights loaded, eval mode)."""
    from transformers import AutoModel

    path = Path(path)
    state = read_fairseq_state(path)  # music_ssl/__init__ (our parent) registered models and safe globals
    cfg = state["cfg"]
    if family(cfg.model._name, path) == "music2vec2":
        return convert_music2vec2(state, path)
    config = hf_config(cfg.model, path)
    model = AutoModel.from_config(config)
    weights, dropped = convert_state_dict(state["model"], cfg.model, model.state_dict(), path)
    model.load_state_dict(weights, strict=True)
    logger.info("%s: %s -> %s, dropped pretraining-only %s", path, cfg.model._name, type(model).__name__, dropped)
    return Conversion(model.eval(), int(cfg.task.sample_rate), bool(cfg.task.get("normalize", False)),
                      cfg.model._name, dropped)


# ---- music2vec2 (data2vec 2.0 audio): the remote-code export --------------------------------------------------

REMOTE_CODE = ("configuration_music2vec2.py", "modeling_music2vec2.py")  # copied from this folder into the export
M2V2_AUTO_MAP = {"AutoConfig": "configuration_music2vec2.Music2Vec2Config",
                 "AutoModel": "modeling_music2vec2.Music2Vec2Model"}
# Every key of cfg.model (data2vec_multi) and of cfg.model.modalities.audio is in one table, as for the other models.
M2V2_CONFIG_RENAMED = {  # fairseq key -> Music2Vec2Config key, same value
    "embed_dim": "hidden_size", "depth": "num_hidden_layers", "num_heads": "num_attention_heads",
    "norm_eps": "layer_norm_eps", "norm_affine": "norm_affine", "layer_norm_first": "layer_norm_first",
    "encoder_dropout": "hidden_dropout", "attention_dropout": "attention_dropout",
    "activation_dropout": "activation_dropout", "post_mlp_drop": "post_mlp_dropout",
    "dropout_input": "feat_proj_dropout", "layerdrop": "layerdrop",
}
M2V2_CONFIG_DERIVED = ("_name", "mlp_ratio", "modalities", "supported_modality")  # read by music2vec2_config
M2V2_CONFIG_UNUSED = (  # no effect on the student's hidden states in eval mode
    "start_drop_path_rate", "end_drop_path_rate", "mae_init", "seed",  # stochastic depth (training), init, seed
    # the data2vec 2.0 objective: targets, teacher, decoders, losses
    "loss_beta", "loss_scale", "average_top_k_layers", "end_of_block_targets", "clone_batch", "layer_norm_target_layer",
    "batch_norm_target_layer", "instance_norm_target_layer", "instance_norm_targets", "layer_norm_targets",
    "ema_decay", "ema_same_dtype", "log_norms", "ema_end_decay", "ema_anneal_end_step", "ema_encoder_only",
    "max_update", "shared_decoder", "min_target_var", "min_pred_var", "skip_ema", "cls_loss", "recon_loss",
    "d2v_loss", "decoder_group",
)
M2V2_AUDIO_RENAMED = {  # modalities.audio key -> Music2Vec2Config key
    "prenet_depth": "num_prenet_layers", "prenet_dropout": "prenet_dropout", "conv_pos_depth": "num_conv_pos_layers",
    "conv_pos_groups": "num_conv_pos_embedding_groups", "conv_pos_pre_ln": "conv_pos_pre_layer_norm",
    "use_alibi_encoder": "use_alibi", "num_alibi_heads": "num_alibi_heads", "alibi_scale": "alibi_scale_init",
    "learned_alibi_scale_per_head": "alibi_scale_per_head", "learned_alibi_scale_per_layer": "alibi_scale_per_layer",
}
M2V2_AUDIO_DERIVED = ("type", "feature_encoder_spec", "extractor_mode", "conv_pos_width", "model_depth")
M2V2_AUDIO_REQUIRED = {"num_extra_tokens": 0, "learned_alibi": False}  # what Music2Vec2Model implements
M2V2_AUDIO_UNUSED = (  # no effect on the unmasked student in eval mode
    "prenet_layerdrop", "start_drop_path_rate", "end_drop_path_rate", "init_extra_token_zero", "local_grad_mult",
    "learned_alibi_scale", "alibi_max_pos", "ema_local_encoder", "decoder",  # gradients, teacher, decoder
    "mask_noise_std", "mask_prob_min", "mask_prob", "inverse_mask", "mask_prob_adjust", "keep_masked_pct",
    "mask_length", "add_masks", "remove_masks", "mask_dropout", "encoder_zero_mask", "mask_channel_prob",
    "mask_channel_length",
)
M2V2_PRETRAINING_ONLY = (r"_ema", r"modality_encoders\.AUDIO\.decoder\..*", r"shared_decoder\..*", r"recon_proj\..*")
_AUDIO = r"modality_encoders\.AUDIO\."
_BLOCK = {"norm1": "layer_norm", "attn.qkv": "attention.qkv_proj", "attn.proj": "attention.out_proj",
          "norm2": "final_layer_norm", "mlp.fc1": "feed_forward.intermediate_dense",
          "mlp.fc2": "feed_forward.output_dense"}
M2V2_RULES = [  # (fairseq key regex, transformers key template or function of the match)
    (_AUDIO + r"local_encoder\.conv_layers\.(\d+)\.0\.(weight|bias)", "feature_extractor.conv_layers.{0}.conv.{1}"),
    (_AUDIO + r"local_encoder\.conv_layers\.(\d+)\.2\.1\.(weight|bias)",  # extractor_mode layer_norm
     "feature_extractor.conv_layers.{0}.layer_norm.{1}"),
    (_AUDIO + r"local_encoder\.conv_layers\.0\.2\.(weight|bias)", "feature_extractor.conv_layers.0.layer_norm.{0}"),
    (_AUDIO + r"project_features\.1\.(weight|bias)", "feature_projection.layer_norm.{0}"),
    (_AUDIO + r"project_features\.2\.(weight|bias)", "feature_projection.projection.{0}"),
    # positional convs: Sequential(TransposeLast, conv block 0, 1, …), inside Sequential(LayerNorm, ·) with pre-LN
    (_AUDIO + r"relative_positional_encoder\.(?:1\.)?(\d+)\.0\.(weight|bias)",
     lambda m: f"pos_conv_embed.layers.{int(m[1]) - 1}.conv.{m[2]}"),
    (_AUDIO + r"relative_positional_encoder\.0\.(weight|bias)", "pos_conv_embed.layer_norm.{0}"),
    (_AUDIO + r"alibi_scale", "encoder.alibi_scale"),
    (_AUDIO + r"context_encoder\.norm\.(weight|bias)", "encoder.context_layer_norm.{0}"),
    (r"norm\.(weight|bias)", "encoder.layer_norm.{0}"),
] + [(prefix + r"\.(\d+)\." + re.escape(old) + r"\.(weight|bias)", f"{new_prefix}.{{0}}.{new}.{{1}}")
     for prefix, new_prefix in ((r"blocks", "encoder.layers"),
                                (_AUDIO + r"context_encoder\.blocks", "encoder.prenet_layers"))
     for old, new in _BLOCK.items()]


def check_table_keys(cfg, tables, path, where: str) -> None:
    """Raise for a key of ``cfg`` in no table, a renamed key missing, or a required key with another value;
    ``tables``: (renamed dict, derived, required dict, unused)."""
    renamed, derived, required, unused = tables
    unknown = sorted(set(cfg.keys()) - set(renamed) - set(derived) - set(required) - set(unused))
    require(not unknown, path, f"{where} keys the converter does not know: {unknown}; they may change the encoder: "
            f"check what each does and add it to an M2V2_ table in music_ssl/export/hf.py.")
    missing = sorted(k for k in renamed if k not in cfg)
    require(not missing, path, f"{where} lacks {missing}; re-save the checkpoint with a current fairseq.")
    for key, value in required.items():
        actual = cfg.get(key, value)
        require(str(actual) == str(value), path, f"{where}.{key}={actual}: the exported Music2Vec2Model implements "
                f"only {key}={value}.")


def music2vec2_config(cfg, path):
    """The ``Music2Vec2Config`` of a data2vec 2.0 audio model config ``cfg`` (``cfg.model``); raises on values
    :mod:`.modeling_music2vec2` does not implement."""
    from .configuration_music2vec2 import Music2Vec2Config

    check_table_keys(cfg, (M2V2_CONFIG_RENAMED, M2V2_CONFIG_DERIVED, {}, M2V2_CONFIG_UNUSED), path, "model config")
    modality = str(getattr(cfg.supported_modality, "name", cfg.supported_modality))
    require(modality == "AUDIO", path, f"supported_modality={modality}: only audio data2vec 2.0 models export.")
    audio = cfg.modalities.audio
    check_table_keys(audio, (M2V2_AUDIO_RENAMED, M2V2_AUDIO_DERIVED, M2V2_AUDIO_REQUIRED, M2V2_AUDIO_UNUSED), path,
                     "model.modalities.audio")
    extractor = str(audio.extractor_mode)
    require(extractor in ("layer_norm", "default"), path, f"extractor_mode={extractor} is unknown.")
    require(int(audio.model_depth) == int(cfg.depth), path, f"modalities.audio.model_depth={audio.model_depth} "
            f"differs from depth={cfg.depth}.")
    layers = conv_layers(audio.feature_encoder_spec)  # [(dim, kernel, stride)]
    depth = int(audio.conv_pos_depth)
    return Music2Vec2Config(
        **{hf_key: cfg[key] for key, hf_key in M2V2_CONFIG_RENAMED.items()},
        **{hf_key: audio[key] for key, hf_key in M2V2_AUDIO_RENAMED.items()},
        intermediate_size=int(cfg.embed_dim * cfg.mlp_ratio),  # timm Mlp: int(dim * mlp_ratio)
        conv_dim=[d for d, _, _ in layers], conv_kernel=[k for _, k, _ in layers],
        conv_stride=[s for _, _, s in layers], feat_extract_norm="layer" if extractor == "layer_norm" else "group",
        conv_pos_kernel_size=max(3, int(audio.conv_pos_width) // depth),  # fairseq's AudioEncoder kernel
        architectures=["Music2Vec2Model"], auto_map=dict(M2V2_AUTO_MAP))


def convert_music2vec2(state: dict, path: Path) -> Conversion:
    """``Music2Vec2Model`` with the student's weights of data2vec 2.0 checkpoint state ``state`` (eval mode).

    Raises :class:`ExportError` for a weight no rule names, a model weight nothing fills, or a shape mismatch."""
    from .modeling_music2vec2 import Music2Vec2Model

    cfg = state["cfg"]
    model = Music2Vec2Model(music2vec2_config(cfg.model, path))
    hf_state = model.state_dict()
    dropped = [k for k in state["model"] if any(re.fullmatch(p, k) for p in M2V2_PRETRAINING_ONLY)]
    weights, unknown = {}, []
    for key, value in state["model"].items():
        new = None if key in dropped else rename(key, M2V2_RULES)
        if new is None and key not in dropped:
            unknown.append(key)
        elif new is not None:
            weights[new] = value
    require(not unknown, path, f"weights with no Music2Vec2Model counterpart: {unknown[:8]} ({len(unknown)} in "
            f"all); the converter maps the audio student of data2vec 2.0 and drops its teacher and decoders.")
    missing, extra = sorted(set(hf_state) - set(weights)), sorted(set(weights) - set(hf_state))
    require(not missing and not extra, path, f"weights do not match the inferred Music2Vec2Model: missing "
            f"{missing[:8]}, unexpected {extra[:8]}.")
    wrong = [(k, tuple(weights[k].shape), tuple(hf_state[k].shape)) for k in weights
             if tuple(weights[k].shape) != tuple(hf_state[k].shape)]
    require(not wrong, path, f"shape mismatch (name, fairseq, transformers) for {wrong[:4]}.")
    model.load_state_dict(weights, strict=True)
    logger.info("%s: %s -> Music2Vec2Model (remote code), dropped pretraining-only %s", path, cfg.model._name, dropped)
    return Conversion(model.eval(), int(cfg.task.sample_rate), bool(cfg.task.get("normalize", False)),
                      cfg.model._name, dropped)


def write_remote_code(conversion: Conversion, folder: Path) -> None:
    """Copy the model's own configuration / modeling files beside its config.json (music2vec2 only)."""
    if family(conversion.fairseq_name, folder) == "music2vec2":
        for name in REMOTE_CODE:
            shutil.copyfile(Path(__file__).with_name(name), folder / name)


def feature_extractor(conversion: Conversion):
    """The ``Wav2Vec2FeatureExtractor`` users load beside the model (attention masks only for layer-norm stacks)."""
    from transformers import Wav2Vec2FeatureExtractor

    layer_norm_stack = getattr(conversion.model.config, "feat_extract_norm", "layer") == "layer"
    return Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=conversion.sample_rate, padding_value=0.0,
                                    do_normalize=conversion.normalize, return_attention_mask=layer_norm_stack)


EXPORT_FILES = ("config.json", "model.safetensors", "preprocessor_config.json") + REMOTE_CODE + ("export_info.json",)
EXPORT_FIX = "choose an OUT_DIR on another disk"  # the alternative a full / read-only disk's message offers
OTHER_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json", "model.safetensors.index.json", "tf_model.h5",
                 "flax_model.msgpack")  # weight files transformers may load instead of (or beside) ours


def check_target(out_dir: Path, names, overwrite: bool) -> None:
    """Raise unless ``out_dir`` may receive files ``names``: not a file, no name present unless ``overwrite``, and
    no weight file of another export that transformers could load instead of ours."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"{out_dir}: exists and is not a folder; choose a folder path for the export.")
    present = [n for n in names if (out_dir / n).exists()]
    if present and not overwrite:
        raise ExportError(f"{out_dir}: already holds {', '.join(present)} (an earlier or interrupted export?); "
                          f"choose a new folder or pass overwrite=True to replace only the files the export writes.")
    other = sorted({n for n in OTHER_WEIGHTS if (out_dir / n).exists()} |
                   {p.name for p in out_dir.glob("model-*-of-*.safetensors")} - set(names))
    if other:
        raise ExportError(f"{out_dir}: holds weight files this export does not write ({', '.join(other)}) that "
                          f"transformers could load instead; move them away or export into a new folder.")


@contextmanager
def staging_dir(out_dir: Path, overwrite: bool, size: Optional[int] = None):
    """Yield a temporary folder ``.NAME.tmp-PID`` beside ``out_dir``; on success move the files written there into
    ``out_dir`` (each by one rename, ``export_info.json`` last, so its presence marks a complete export).

    Files of ``out_dir`` the export does not write are never touched. Permissions follow the umask (transformers
    and safetensors create owner-only files). Staging folders of killed exports are removed first. ``size``
    (bytes) is checked against the free space first; a full or read-only disk raises one ``DiskError`` line.
    """
    check_target(out_dir, EXPORT_FILES, overwrite)
    with disk_errors(out_dir, size, EXPORT_FIX):
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(out_dir)
        if size:
            require_space(out_dir, size, EXPORT_FIX)
        tmp = temporary_path(out_dir)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            yield tmp
            names = sorted((p.name for p in tmp.iterdir()), key=lambda n: n == "export_info.json")  # info last
            check_target(out_dir, names, overwrite)
            out_dir.mkdir(parents=True, exist_ok=True)
            (out_dir / "export_info.json").unlink(missing_ok=True)  # until the swap ends the folder is incomplete
            mode = file_mode()
            for name in names:
                os.chmod(tmp / name, mode)
                os.replace(tmp / name, out_dir / name)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def export_checkpoint(checkpoint, out_dir, overwrite: bool = False, check: bool = False) -> dict:
    """Write the transformers folder for ``checkpoint`` into ``out_dir`` (atomically); returns export info.

    With ``check``, the written folder is reloaded with ``AutoModel.from_pretrained`` and compared with the
    fairseq model on random audio (:func:`parity_check`); a failed check raises and writes nothing. With
    ``overwrite``, only the files the export writes (``EXPORT_FILES``) are replaced; others in ``out_dir`` stay.
    """
    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    conversion = convert_checkpoint(checkpoint)
    info = {"source": str(checkpoint.resolve()), "source_sha256": file_sha256(checkpoint),
            "fairseq_model": conversion.fairseq_name, "transformers_class": type(conversion.model).__name__,
            "sample_rate": conversion.sample_rate, "do_normalize": conversion.normalize,
            "dropped_pretraining_only_keys": conversion.dropped}
    if family(conversion.fairseq_name, checkpoint) == "music2vec2":
        info["remote_code"] = list(REMOTE_CODE)  # load with trust_remote_code=True
    weights = sum(t.numel() * t.element_size() for t in conversion.model.state_dict().values())  # model.safetensors
    with staging_dir(out_dir, overwrite, size=weights) as tmp:
        conversion.model.save_pretrained(tmp)
        write_remote_code(conversion, tmp)
        feature_extractor(conversion).save_pretrained(tmp)
        if check:
            from .parity import parity_check

            # the only code a music2vec2 folder runs is the two files just copied from this package
            info["parity"] = parity_check(checkpoint, tmp, trust_remote_code=family(conversion.fairseq_name, tmp)
                                          == "music2vec2")
            require(info["parity"]["passed"], checkpoint, f"parity check failed: {info['parity']}; "
                    f"please report this checkpoint's config.")
        (tmp / "export_info.json").write_text(json.dumps(info, indent=2) + "\n")
    logger.info("wrote %s (%s)", out_dir, info["transformers_class"])
    return info
