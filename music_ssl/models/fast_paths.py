"""Speed options of our models, applied at build time to fairseq's own modules (no fairseq code copied).

* ``sdpa_attention``: fairseq's ``MultiheadAttention`` already ends in ``scaled_dot_product_attention`` (through
  ``F.multi_head_attention_forward``, since ``need_weights=False``), but it projects q, k, v with three matmuls,
  re-concatenates the biases every call and turns the key padding mask into a float additive mask, and HuBERT
  hands every layer an all-False padding mask for cropped batches — a mask that keeps SDPA off its fastest
  (flash) kernel on a GPU. :class:`SdpaSelfAttention` projects q, k, v with one matmul and calls SDPA with a
  boolean mask, or none; :func:`drop_empty_padding_mask` drops an all-False mask once at the encoder's entry
  (one ``.any()`` host sync per forward, the check fairseq's data2vec already makes in its own forward).
  Equal to the stock path within fp32 rounding (tests/test_speed_attention.py), not bit-identical: default off.
* ``pos_conv_fp32``: under bf16 autocast the positional convolution runs in fp32 (cuDNN's bf16 grouped-conv
  kernel for it was ≈15x slower than fp32 on an H100 at ≤ 3 clips of 30 s). Without autocast it changes nothing
  (bit-identical), so it is on by default.

Both swap the class of an existing module (``module.__class__ = Subclass``): parameters, buffers, state-dict
keys and checkpoints stay exactly as fairseq's.
"""
import torch
import torch.nn.functional as F
from fairseq.modules.multihead_attention import MultiheadAttention
from torch import nn
from ..core.errors import ConfigError

SDPA_ATTENTION_HELP = ("self-attention through one fused q/k/v matmul and torch scaled_dot_product_attention with a "
                       "boolean (or no) padding mask; equal to fairseq's MultiheadAttention within fp32 rounding")
POS_CONV_FP32_HELP = "run the positional convolution in fp32 under bf16 autocast (identical without autocast)"


class SdpaSelfAttention(MultiheadAttention):
    """fairseq ``MultiheadAttention`` whose plain self-attention call goes straight to SDPA.

    Every other use (incremental decoding, attention weights, attn_mask, bias_k, xformers, ...) falls back to
    fairseq's own forward. Inputs and outputs as fairseq: query (T, B, C); key_padding_mask (B, T) bool,
    True on padded frames.
    """

    def fast_path_applies(self, query, key, value, key_padding_mask, incremental_state, need_weights, static_kv,
                          attn_mask, before_softmax, need_head_weights) -> bool:
        return (self.self_attention and key is query and value is query and incremental_state is None
                and not (need_weights or need_head_weights or static_kv or before_softmax)
                and attn_mask is None and self.bias_k is None and not self.add_zero_attn
                and not (self.use_xformers or self.onnx_trace or self.skip_embed_dim_check)
                and query.device.type != "xla")

    def forward(self, query, key=None, value=None, key_padding_mask=None, incremental_state=None, need_weights=True,
                static_kv=False, attn_mask=None, before_softmax=False, need_head_weights=False):
        if not self.fast_path_applies(query, key, value, key_padding_mask, incremental_state, need_weights,
                                      static_kv, attn_mask, before_softmax, need_head_weights):
            return super().forward(query, key, value, key_padding_mask, incremental_state, need_weights, static_kv,
                                   attn_mask, before_softmax, need_head_weights)
        frames, batch, channels = query.shape
        weight = torch.cat((self.q_proj.weight, self.k_proj.weight, self.v_proj.weight))  # (3C, C)
        bias = torch.cat((self.q_proj.bias, self.k_proj.bias, self.v_proj.bias))  # (3C,)
        qkv = F.linear(query, weight, bias).view(frames, batch, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 1, 3, 0, 4).unbind(0)  # each (B, H, T, D)
        keep = None if key_padding_mask is None else ~key_padding_mask.bool()[:, None, None, :]  # (B, 1, 1, T)
        dropout = self.dropout_module.p if self.training or self.dropout_module.apply_during_inference else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, dropout_p=dropout)  # (B, H, T, D)
        out = out.permute(2, 0, 1, 3).reshape(frames, batch, channels)  # (T, B, C)
        return self.out_proj(out), None


class Fp32Sequential(nn.Sequential):
    """An ``nn.Sequential`` that runs in fp32 with autocast off; returns fp32 (the residual add promotes)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_autocast_enabled(x.device.type):
            return super().forward(x)
        with torch.autocast(device_type=x.device.type, enabled=False):
            return super().forward(x.float())


def drop_empty_padding_mask(_module, args, kwargs):
    """Encoder forward pre-hook: an all-False ``padding_mask`` becomes None (identical result, SDPA unmasked)."""
    mask = kwargs.get("padding_mask")
    if mask is not None and not mask.any():
        kwargs["padding_mask"] = None
        return args, kwargs
    return None


def apply_fast_paths(encoder: nn.Module, sdpa_attention: bool, pos_conv_fp32: bool) -> None:
    """Swap the chosen fast paths into a wav2vec2 ``TransformerEncoder`` in place (see the module docstring)."""
    if sdpa_attention:
        for layer in encoder.layers:
            if type(layer.self_attn) is not MultiheadAttention:
                raise ConfigError(f"sdpa_attention expects fairseq's MultiheadAttention, found "
                                  f"{type(layer.self_attn).__name__}: set model.sdpa_attention=false")
            layer.self_attn.__class__ = SdpaSelfAttention
        encoder.register_forward_pre_hook(drop_empty_padding_mask, with_kwargs=True)
    if pos_conv_fp32:
        if type(encoder.pos_conv) is not nn.Sequential:
            raise ConfigError(f"pos_conv_fp32 expects an nn.Sequential pos_conv, found {type(encoder.pos_conv).__name__}")
        encoder.pos_conv.__class__ = Fp32Sequential
