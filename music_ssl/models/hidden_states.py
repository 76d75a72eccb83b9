"""Every hidden state of a wav2vec2-family fairseq model (wav2vec2, HuBERT, data2vec-audio and ours).

One function serves both music models (their ``extract_hidden_states``) and the stock fairseq models
loaded by :class:`music_ssl.checkpoint.FrozenEncoder`, so probing and label iteration 2 see the same
states whichever model produced them. The states follow the Hugging Face ``output_hidden_states``
convention, so exported models give the same list:

* index 0: the Transformer input (CNN features projected to C, positional convolution added, and the
  encoder layer norm applied for post-LN models) — the state fed to layer 1;
* index i (1..L): the output of Transformer layer i (the final layer norm applied to the last one for
  pre-LN models, as the encoder's own output does).

State 0 is *not* the CNN output: :func:`extract_cnn_features` gives that (the conv feature extractor's raw
output, e.g. 512-d, before the feature layer norm and the projection to C; MAP-Music2Vec's Table 1 reports
probes on it).
"""
from typing import List, Optional, Tuple

import torch
from torch import nn


def extract_hidden_states(model: nn.Module, source: torch.Tensor, padding_mask: Optional[torch.Tensor] = None
                          ) -> Tuple[List[torch.Tensor], Optional[torch.Tensor]]:
    """Run ``model`` unmasked on ``source`` and collect the input and output of every Transformer layer.

    Args:
        model: a fairseq wav2vec2 / HuBERT / data2vec-audio model whose ``forward(source, padding_mask=…,
            mask=False, features_only=True)`` returns a dict with ``x`` and ``padding_mask``.
        source: (B, S) float waveform at the model's sample rate.
        padding_mask: (B, S) bool, True on padded samples, or None.

    Returns:
        (hidden, frame_padding_mask): hidden is a list of L + 1 tensors (B, T, C); frame_padding_mask is
        (B, T) bool (True = padded frame) or None when nothing is padded.
    """
    encoder = model.encoder
    states: List[torch.Tensor] = []  # each (T', B, C), T' >= T when the encoder pads to a multiple

    def keep_input(_module, args):
        states.append(args[0])

    def keep_output(_module, _args, output):
        states.append(output[0])

    hooks = [encoder.layers[0].register_forward_pre_hook(keep_input)]
    hooks += [layer.register_forward_hook(keep_output) for layer in encoder.layers]
    try:
        result = model(source, padding_mask=padding_mask, mask=False, features_only=True)
    finally:
        for hook in hooks:
            hook.remove()
    x = result["x"]  # (B, T, C)
    hidden = [state.transpose(0, 1)[:, : x.size(1)] for state in states]  # each (B, T, C)
    if encoder.layer_norm_first:
        hidden[-1] = x
    frame_mask = result.get("padding_mask")
    if frame_mask is not None and not frame_mask.any():
        frame_mask = None
    return hidden, frame_mask


def extract_cnn_features(model: nn.Module, source: torch.Tensor) -> torch.Tensor:
    """The raw output of the conv feature extractor of ``model`` on an unpadded batch.

    Args:
        model: a fairseq wav2vec2 / HuBERT / data2vec-audio model (``model.feature_extractor``).
        source: (B, S) float waveform at the model's sample rate.

    Returns:
        (B, T, C_conv) float: the conv stack's output (before the feature layer norm and the projection),
        T = the frames of the hidden states.
    """
    return model.feature_extractor(source).transpose(1, 2)  # (B, C_conv, T) -> (B, T, C_conv)


class HiddenStatesMixin:
    """Gives a fairseq wav2vec2-family model the ``extract_hidden_states`` method shared by our models."""

    def extract_hidden_states(self, source: torch.Tensor, padding_mask: Optional[torch.Tensor] = None
                              ) -> Tuple[List[torch.Tensor], Optional[torch.Tensor]]:
        """Every hidden state, unmasked: source (B, S) float at 16 kHz, padding_mask (B, S) bool or None →
        (list of L + 1 tensors (B, T, C), (B, T) bool frame padding mask or None). See the module docstring."""
        return extract_hidden_states(self, source, padding_mask)
