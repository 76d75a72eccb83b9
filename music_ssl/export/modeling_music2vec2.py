"""transformers model of music2vec2 (data2vec 2.0 audio encoders): ``Music2Vec2Model``, every hidden state.

This file is *remote code*: ``music-ssl-export-hf`` copies it, with ``configuration_music2vec2.py``, into every folder
it exports from a ``music2vec2`` checkpoint (transformers has no data2vec 2.0 class), and config.json's ``auto_map``
names both, so ``AutoModel.from_pretrained(folder, trust_remote_code=True)`` builds this class. It depends on torch
and transformers only.

The encoder is the student of fairseq's ``data2vec_multi`` (Baevski et al. 2023) for audio, unmasked, eval mode:

1. conv feature encoder: per layer Conv1d (no bias) → layer norm over channels (``feat_extract_norm="layer"``; or a
   group norm with one group per channel after the first conv only, ``"group"``) → GELU; (B, S) → (B, C_conv, T);
2. feature projection: layer norm over C_conv → linear to C; (B, T, C);
3. positional convolution, added to its input: [affine layer norm] → ``num_conv_pos_layers`` × (grouped Conv1d with
   padding ``k // 2``, the last frame dropped for even ``k``, layer norm without weights, GELU);
4. post-LN models: a layer norm; then the ``num_prenet_layers`` context blocks (none in the shipped configs);
5. ``num_hidden_layers`` blocks: self-attention with ALiBi biases ``-slope_h * |i - j|`` (ALiBi slopes of Press et al.
   2022 for ``num_alibi_heads`` heads) times a learned scale ≥ 0 per head (and per layer when so configured), then a
   GELU feed-forward; post-LN (``x = norm1(x + attn(x)); x = norm2(x + mlp(x))``) or pre-LN;
6. pre-LN models: a final layer norm (pre-LN blocks as fairseq computes them: see ``Music2Vec2Block``).

Outputs (``BaseModelOutput``): ``last_hidden_state`` (B, T, C) and, with ``output_hidden_states=True``,
``hidden_states``: L + 1 tensors (B, T, C), index 0 the input of block 1 (after step 4), index i the output of block
i, the last one equal to ``last_hidden_state`` (the final norm applied for pre-LN models) — the convention of
``music_ssl``'s ``Music2Vec2Model.extract_hidden_states``. ``attention_mask`` (B, S), 1 on valid samples: frame t of
an item is padded when t ≥ its conv-formula frame count; padded frames are excluded as attention keys (their own
outputs are meaningless), exactly as fairseq does. Frames: T = the conv formula of S (50 Hz for the 320× stack at
16 kHz). Input: float waveforms at the folder's ``preprocessor_config.json`` rate, normalised per clip when it says
``do_normalize`` (music2vec2 is trained on ``F.layer_norm``-normalised audio).

Parity: ``music-ssl-export-hf --check`` compares every hidden state of this class with the fairseq model's on random
audio, unpadded and padded. Training-mode extras that do not change eval outputs (dropouts, layerdrop) exist;
stochastic depth (fairseq ``drop_path``) and masking are not implemented: this class is for feature extraction and
fine-tuning from the exported weights, not for data2vec 2.0 pretraining.
"""
import math
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.activations import ACT2FN
from transformers.modeling_outputs import BaseModelOutput

from .configuration_music2vec2 import Music2Vec2Config

try:  # transformers >= 5: initialisers that leave loaded weights alone
    from transformers import initialization as _init
except ImportError:  # older transformers initialise before loading
    _init = nn.init


def alibi_slopes(heads: int) -> List[float]:
    """ALiBi slopes of ``heads`` heads (Press et al. 2022, Sec. 3): for a power of two n, the geometric sequence
    2^(-8/n), 2^(-16/n), …; otherwise (the rule of the ALiBi authors' code, which fairseq's data2vec 2.0 uses) the
    n' = 2^floor(log2 n) slopes followed by every other slope of 2n' (the first n - n' of them)."""
    def geometric(n: int) -> List[float]:
        first = 2.0 ** (-8.0 / n)
        return [first ** (i + 1) for i in range(n)]

    lower = 2 ** int(math.floor(math.log2(heads)))
    if lower == heads:
        return geometric(heads)
    return geometric(lower) + geometric(2 * lower)[0::2][: heads - lower]


def alibi_bias(heads: int, frames: int, device: torch.device) -> torch.Tensor:
    """(heads, frames, frames) float32: ``-slope_h * |i - j|``, symmetric (the encoder is bidirectional)."""
    positions = torch.arange(frames, device=device)
    distance = -(positions[None, :] - positions[:, None]).abs().float()  # (T, T), exact integers
    slopes = torch.tensor(alibi_slopes(heads), dtype=torch.float32, device=device)
    return slopes[:, None, None] * distance[None]


class Music2Vec2ConvLayer(nn.Module):
    """Conv1d → norm (layer norm over channels, or a per-channel group norm, computed in float32; or none) → GELU.
    (B, C_in, S_in) → (B, C_out, S_out), S_out = floor((S_in - kernel) / stride) + 1."""

    def __init__(self, config: Music2Vec2Config, index: int):
        super().__init__()
        channels_in = 1 if index == 0 else config.conv_dim[index - 1]
        channels = config.conv_dim[index]
        self.conv = nn.Conv1d(channels_in, channels, config.conv_kernel[index], stride=config.conv_stride[index],
                              bias=config.conv_bias)
        self.norm_kind = config.feat_extract_norm if config.feat_extract_norm == "layer" or index == 0 else None
        self.eps = config.feature_layer_norm_eps
        if self.norm_kind == "layer":
            self.layer_norm = nn.LayerNorm(channels, eps=self.eps)
        elif self.norm_kind == "group":
            self.layer_norm = nn.GroupNorm(channels, channels, eps=self.eps)
        self.activation = ACT2FN[config.feat_extract_activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)  # (B, C, S')
        norm = getattr(self, "layer_norm", None)
        if self.norm_kind == "layer":
            x = F.layer_norm(x.transpose(1, 2).float(), norm.normalized_shape, norm.weight.float(), norm.bias.float(),
                             self.eps).type_as(x).transpose(1, 2)
        elif self.norm_kind == "group":
            x = F.group_norm(x.float(), norm.num_groups, norm.weight.float(), norm.bias.float(), self.eps).type_as(x)
        return self.activation(x)


class Music2Vec2FeatureEncoder(nn.Module):
    """The conv stack: waveform (B, S) → features (B, conv_dim[-1], T)."""

    def __init__(self, config: Music2Vec2Config):
        super().__init__()
        self.conv_layers = nn.ModuleList(Music2Vec2ConvLayer(config, i) for i in range(len(config.conv_dim)))

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        x = input_values[:, None]  # (B, 1, S)
        for layer in self.conv_layers:
            x = layer(x)
        return x


class Music2Vec2FeatureProjection(nn.Module):
    """Layer norm over the conv channels, then a linear map to the model width: (B, T, C_conv) → (B, T, C)."""

    def __init__(self, config: Music2Vec2Config):
        super().__init__()
        self.layer_norm = nn.LayerNorm(config.conv_dim[-1], eps=config.feature_layer_norm_eps)
        self.projection = nn.Linear(config.conv_dim[-1], config.hidden_size)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.projection(self.layer_norm(features))


class Music2Vec2PositionalConvLayer(nn.Module):
    """Grouped Conv1d ('same' length: padding k // 2, the extra last frame of an even k dropped) → layer norm without
    weights over channels → GELU. (B, C, T) → (B, C, T)."""

    def __init__(self, config: Music2Vec2Config):
        super().__init__()
        kernel = config.conv_pos_kernel_size
        self.conv = nn.Conv1d(config.hidden_size, config.hidden_size, kernel, padding=kernel // 2,
                              groups=config.num_conv_pos_embedding_groups)
        self.remove = 1 if kernel % 2 == 0 else 0
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.feature_layer_norm_eps, elementwise_affine=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.remove:
            x = x[:, :, : -self.remove]
        return F.gelu(self.layer_norm(x.transpose(1, 2)).transpose(1, 2))


class Music2Vec2PositionalConvEmbedding(nn.Module):
    """The relative positional encoding added to the projected features: (B, T, C) → (B, T, C)."""

    def __init__(self, config: Music2Vec2Config):
        super().__init__()
        if config.conv_pos_pre_layer_norm:
            self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.feature_layer_norm_eps)
        self.layers = nn.ModuleList(Music2Vec2PositionalConvLayer(config) for _ in range(config.num_conv_pos_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "layer_norm"):
            x = self.layer_norm(x)
        x = x.transpose(1, 2)  # (B, C, T)
        for layer in self.layers:
            x = layer(x)
        return x.transpose(1, 2)


class Music2Vec2Attention(nn.Module):
    """Multi-head self-attention with one fused q/k/v projection and an additive bias (ALiBi) on the first heads.
    x (B, T, C), bias (B or 1, H' <= H, T, T) float32 or None, key_padding (B, T) bool (True = padded) or None."""

    def __init__(self, config: Music2Vec2Config):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // self.num_heads
        self.scaling = self.head_dim ** -0.5
        self.qkv_proj = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.out_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.attention_dropout = nn.Dropout(config.attention_dropout)
        self.output_dropout = nn.Dropout(config.hidden_dropout)

    def forward(self, x: torch.Tensor, bias: Optional[torch.Tensor], key_padding: Optional[torch.Tensor]
                ) -> Tuple[torch.Tensor, torch.Tensor]:
        batch, frames, width = x.shape
        qkv = self.qkv_proj(x).reshape(batch, frames, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        query, key, value = qkv[0], qkv[1], qkv[2]  # each (B, H, T, D)
        scores = (query * self.scaling) @ key.transpose(-2, -1)  # (B, H, T, T)
        if bias is not None:
            scores = scores.type_as(bias)
            scores[:, : bias.size(1)] += bias
        if key_padding is not None:
            scores = scores.masked_fill(key_padding[:, None, None, :], float("-inf"))
        probs = scores.softmax(dim=-1, dtype=torch.float32).to(query.dtype)
        out = (self.attention_dropout(probs) @ value).transpose(1, 2).reshape(batch, frames, width)
        return self.output_dropout(self.out_proj(out)), probs


class Music2Vec2FeedForward(nn.Module):
    """Linear C → intermediate_size, activation, dropout, linear back to C: (B, T, C) → (B, T, C)."""

    def __init__(self, config: Music2Vec2Config):
        super().__init__()
        self.intermediate_dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.activation = ACT2FN[config.hidden_act]
        self.dropout = nn.Dropout(config.activation_dropout)
        self.output_dense = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_dense(self.dropout(self.activation(self.intermediate_dense(x))))


class Music2Vec2Block(nn.Module):
    """One data2vec 2.0 block; ``layer_norm`` / ``final_layer_norm`` are fairseq's ``norm1`` / ``norm2``.
    (B, T, C) → ((B, T, C), attention probabilities (B, H, T, T)).

    Post-LN (data2vec 2.0's audio setting): ``x = norm1(x + attn(x)); x = norm2(x + mlp(x))``. Pre-LN reproduces
    fairseq's ``AltBlock`` as it computes: ``x = x + attn(norm1(x)); y = mlp(norm2(x)); x = y + dropout(y)`` (the
    feed-forward has no residual there, eval output 2y), so exported pre-LN checkpoints keep their hidden states."""

    def __init__(self, config: Music2Vec2Config):
        super().__init__()
        self.layer_norm_first = config.layer_norm_first
        self.attention = Music2Vec2Attention(config)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps,
                                       elementwise_affine=config.norm_affine)
        self.feed_forward = Music2Vec2FeedForward(config)
        self.final_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps,
                                             elementwise_affine=config.norm_affine)
        self.post_mlp_dropout = nn.Dropout(config.post_mlp_dropout)

    def forward(self, x: torch.Tensor, bias: Optional[torch.Tensor], key_padding: Optional[torch.Tensor]
                ) -> Tuple[torch.Tensor, torch.Tensor]:
        if self.layer_norm_first:  # as fairseq's AltBlock: the feed-forward output y replaces the stream, x = y + y'
            attended, probs = self.attention(self.layer_norm(x), bias, key_padding)
            x = x + attended
            y = self.feed_forward(self.final_layer_norm(x))
            return y + self.post_mlp_dropout(y), probs
        attended, probs = self.attention(x, bias, key_padding)
        x = self.layer_norm(x + attended)
        return self.final_layer_norm(x + self.post_mlp_dropout(self.feed_forward(x))), probs


class Music2Vec2Encoder(nn.Module):
    """Context blocks and the L blocks, with their ALiBi scale; (B, T, C) → hidden states, see :meth:`forward`."""

    def __init__(self, config: Music2Vec2Config):
        super().__init__()
        self.config = config
        if not config.layer_norm_first:
            self.context_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps,
                                                   elementwise_affine=config.norm_affine)
        self.context_dropout = nn.Dropout(config.prenet_dropout)
        self.prenet_layers = nn.ModuleList(Music2Vec2Block(config) for _ in range(config.num_prenet_layers))
        self.input_dropout = nn.Dropout(config.feat_proj_dropout)
        self.layers = nn.ModuleList(Music2Vec2Block(config) for _ in range(config.num_hidden_layers))
        if config.layer_norm_first:
            self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps,
                                           elementwise_affine=config.norm_affine)
        if config.use_alibi:
            scales = config.num_prenet_layers + config.num_hidden_layers if config.alibi_scale_per_layer else 1
            heads = config.num_alibi_heads if config.alibi_scale_per_head else 1
            self.alibi_scale = nn.Parameter(torch.full((scales, 1, heads, 1, 1), float(config.alibi_scale_init)))

    def layer_biases(self, frames: int, device: torch.device) -> List[Optional[torch.Tensor]]:
        """The ALiBi bias of every block, prenet first: (1, H', T, T) float32 each (None without ALiBi)."""
        count = len(self.prenet_layers) + len(self.layers)
        if not self.config.use_alibi:
            return [None] * count
        bias = alibi_bias(self.config.num_alibi_heads, frames, device)[None]  # (1, H', T, T)
        scale = self.alibi_scale.clamp_min(0)  # (layers or 1, 1, H' or 1, 1, 1)
        if scale.size(0) == 1:
            return [bias * scale[0].float()] * count
        return [bias * scale[i].float() for i in range(count)]

    def run(self, block: Music2Vec2Block, x: torch.Tensor, bias, key_padding) -> Tuple[torch.Tensor, torch.Tensor]:
        """One block, skipped with probability ``layerdrop`` in training (the input passes through, no probs)."""
        if self.training and self.config.layerdrop > 0 and torch.rand(()) < self.config.layerdrop:
            return x, None
        return block(x, bias, key_padding)

    def forward(self, x: torch.Tensor, key_padding: Optional[torch.Tensor]
                ) -> Tuple[torch.Tensor, List[torch.Tensor], List[torch.Tensor]]:
        """x: (B, T, C) projected features plus positions; key_padding: (B, T) bool, True = padded, or None.

        Returns (last_hidden_state (B, T, C), L + 1 hidden states (B, T, C), L attention maps (B, H, T, T))."""
        biases = self.layer_biases(x.size(1), x.device)
        if hasattr(self, "context_layer_norm"):
            x = self.context_layer_norm(x)
        x = self.context_dropout(x)
        for block, bias in zip(self.prenet_layers, biases):
            x, _ = self.run(block, x, bias, key_padding)
        x = self.input_dropout(x)
        hidden, attentions = [x], []
        for block, bias in zip(self.layers, biases[len(self.prenet_layers):]):
            x, probs = self.run(block, x, bias, key_padding)
            hidden.append(x)
            attentions.append(probs)
        if hasattr(self, "layer_norm"):
            x = self.layer_norm(x)
            hidden[-1] = x
        return x, hidden, attentions


class Music2Vec2PreTrainedModel(PreTrainedModel):
    """Weight initialisation and loading for music2vec2 models (transformers' defaults plus the ALiBi scale)."""

    config_class = Music2Vec2Config
    base_model_prefix = "music2vec2"
    main_input_name = "input_values"

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, Music2Vec2Encoder) and hasattr(module, "alibi_scale"):
            _init.constant_(module.alibi_scale, float(self.config.alibi_scale_init))

    def frame_lengths(self, sample_lengths: torch.Tensor) -> torch.Tensor:
        """Frames of each item from its valid samples (B,) by the conv formula floor((n - kernel) / stride) + 1."""
        lengths = sample_lengths
        for kernel, stride in zip(self.config.conv_kernel, self.config.conv_stride):
            lengths = torch.div(lengths - kernel, stride, rounding_mode="floor") + 1
        return lengths


class Music2Vec2Model(Music2Vec2PreTrainedModel):
    """The bare music2vec2 encoder: waveform → every hidden state (see the module docstring)."""

    def __init__(self, config: Music2Vec2Config):
        super().__init__(config)
        self.feature_extractor = Music2Vec2FeatureEncoder(config)
        self.feature_projection = Music2Vec2FeatureProjection(config)
        self.pos_conv_embed = Music2Vec2PositionalConvEmbedding(config)
        self.encoder = Music2Vec2Encoder(config)
        self.post_init()

    def key_padding(self, attention_mask: Optional[torch.Tensor], frames: int) -> Optional[torch.Tensor]:
        """(B, S) sample mask (1 = valid) → (B, T) bool, True on frames at or after the item's conv-formula frame
        count; None when nothing is padded."""
        if attention_mask is None or bool(attention_mask.bool().all()):
            return None
        valid = self.frame_lengths(attention_mask.long().sum(-1))  # (B,)
        padded = torch.arange(frames, device=attention_mask.device)[None, :] >= valid[:, None]
        return padded if bool(padded.any()) else None

    def forward(self, input_values: torch.Tensor, attention_mask: Optional[torch.Tensor] = None,
                output_hidden_states: Optional[bool] = None, output_attentions: Optional[bool] = None,
                return_dict: Optional[bool] = None, **kwargs):
        """input_values: (B, S) float waveform; attention_mask: (B, S), 1 on valid samples, or None.

        Returns ``BaseModelOutput``: ``last_hidden_state`` (B, T, C); ``hidden_states`` (L + 1 of (B, T, C)) when
        ``output_hidden_states``; ``attentions`` (L of (B, H, T, T)) when ``output_attentions``; a tuple of those when
        ``return_dict`` is false."""
        config = self.config
        output_hidden_states = config.output_hidden_states if output_hidden_states is None else output_hidden_states
        output_attentions = config.output_attentions if output_attentions is None else output_attentions
        return_dict = getattr(config, "return_dict", True) if return_dict is None else return_dict
        features = self.feature_extractor(input_values).transpose(1, 2)  # (B, T, C_conv)
        x = self.feature_projection(features)  # (B, T, C)
        x = x + self.pos_conv_embed(x)
        last, hidden, attentions = self.encoder(x, self.key_padding(attention_mask, x.size(1)))
        out = BaseModelOutput(last_hidden_state=last, hidden_states=tuple(hidden) if output_hidden_states else None,
                              attentions=tuple(attentions) if output_attentions else None)
        return out if return_dict else out.to_tuple()
