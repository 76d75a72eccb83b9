"""transformers configuration of music2vec2 (data2vec 2.0 audio encoders): ``Music2Vec2Config`` (``music2vec2``).

This file is *remote code*: ``music-ssl-export-hf`` copies it, with ``modeling_music2vec2.py``, into every folder it
exports from a ``music2vec2`` checkpoint, and config.json's ``auto_map`` points ``AutoConfig`` / ``AutoModel`` at them::

    from transformers import AutoModel
    model = AutoModel.from_pretrained("exported/music2vec2", trust_remote_code=True)

It depends on ``transformers`` only (not on fairseq or music_ssl). The fields are named as in transformers'
wav2vec2-family configs where one exists (``hidden_size``, ``conv_dim`` / ``conv_kernel`` / ``conv_stride`` …), so
tools that read a wav2vec2 conv stack from config.json (frame rate, receptive field) read this one too.
"""
from transformers import PretrainedConfig


class Music2Vec2Config(PretrainedConfig):
    r"""The architecture of a music2vec2 / data2vec 2.0 audio encoder (the student of fairseq's ``data2vec_multi``).

    Args:
        hidden_size: model width C (fairseq ``embed_dim``).
        num_hidden_layers: Transformer blocks L (fairseq ``depth``); the model returns L + 1 hidden states.
        num_attention_heads: attention heads (fairseq ``num_heads``).
        intermediate_size: feed-forward width (fairseq ``int(embed_dim * mlp_ratio)``).
        hidden_act: feed-forward activation (fairseq: exact GELU).
        layer_norm_first: pre-LN blocks and a final layer norm (True) or post-LN blocks and a layer norm on the
            block input (False, the data2vec 2.0 audio default).
        layer_norm_eps: eps of the block layer norms (fairseq ``norm_eps``).
        norm_affine: whether the block layer norms have weight and bias (fairseq ``norm_affine``).
        conv_dim, conv_kernel, conv_stride: the conv feature encoder, one entry per conv layer (channels, kernel and
            stride in samples / frames); fairseq ``feature_encoder_spec`` ``[(dim, kernel, stride), ...]``.
        conv_bias: conv layers with a bias (data2vec 2.0: never).
        feat_extract_norm: ``"layer"`` (a layer norm after every conv) or ``"group"`` (a group norm after the first
            conv only); fairseq ``extractor_mode`` ``layer_norm`` / ``default``.
        feat_extract_activation: conv stack activation (exact GELU).
        feature_layer_norm_eps: eps of the conv stack norms, the feature projection's norm and the positional
            convolution's norms (fairseq: 1e-5, torch's default).
        num_conv_pos_layers: stacked positional convolutions (fairseq ``conv_pos_depth``).
        conv_pos_kernel_size: kernel of each positional convolution (fairseq ``max(3, conv_pos_width // depth)``).
        num_conv_pos_embedding_groups: groups of each positional convolution (fairseq ``conv_pos_groups``).
        conv_pos_pre_layer_norm: an affine layer norm before the positional convolutions (fairseq ``conv_pos_pre_ln``).
        num_prenet_layers: blocks of the modality's own context encoder run before the L shared blocks (fairseq
            ``modalities.audio.prenet_depth``; not counted in ``num_hidden_layers``, no hidden state of their own).
        use_alibi: add ALiBi attention biases (fairseq ``use_alibi_encoder``): ``-slope_h * |i - j|`` frames.
        num_alibi_heads: heads that get an ALiBi bias (the first ones; fairseq ``num_alibi_heads``).
        alibi_scale_per_head, alibi_scale_per_layer: shape of the learned, non-negative ALiBi scale
            (``alibi_scale``: (layers or 1, 1, heads or 1, 1, 1), layers = prenet + L); fairseq
            ``learned_alibi_scale_per_head`` / ``_per_layer``.
        alibi_scale_init: initial ALiBi scale (fairseq ``alibi_scale``); exported weights hold the trained value.
        hidden_dropout: dropout after the attention output projection (fairseq ``encoder_dropout``).
        attention_dropout: dropout on attention probabilities.
        activation_dropout: dropout after the feed-forward activation.
        post_mlp_dropout: dropout on the feed-forward output before its residual (fairseq ``post_mlp_drop``).
        prenet_dropout: dropout on the context encoder's input (fairseq ``prenet_dropout``).
        feat_proj_dropout: dropout on the first block's input (fairseq ``dropout_input``).
        layerdrop: probability of skipping a block in training (fairseq ``layerdrop``).
        initializer_range: std of the normal initialisation of linear layers (fresh models only).
    """

    model_type = "music2vec2"

    def __init__(self, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                 hidden_act="gelu", layer_norm_first=False, layer_norm_eps=1e-5, norm_affine=True,
                 conv_dim=(512, 512, 512, 512, 512, 512, 512), conv_kernel=(10, 3, 3, 3, 3, 2, 2),
                 conv_stride=(5, 2, 2, 2, 2, 2, 2), conv_bias=False, feat_extract_norm="layer",
                 feat_extract_activation="gelu", feature_layer_norm_eps=1e-5, num_conv_pos_layers=5,
                 conv_pos_kernel_size=19, num_conv_pos_embedding_groups=16, conv_pos_pre_layer_norm=False,
                 num_prenet_layers=0, use_alibi=True, num_alibi_heads=None, alibi_scale_per_head=True,
                 alibi_scale_per_layer=False, alibi_scale_init=1.0, hidden_dropout=0.1, attention_dropout=0.1,
                 activation_dropout=0.0, post_mlp_dropout=0.1, prenet_dropout=0.0, feat_proj_dropout=0.0,
                 layerdrop=0.0, initializer_range=0.02, **kwargs):
        super().__init__(**kwargs)
        if not len(conv_dim) == len(conv_kernel) == len(conv_stride):
            raise ValueError(f"conv_dim, conv_kernel and conv_stride need one entry per conv layer: "
                             f"{len(conv_dim)}, {len(conv_kernel)}, {len(conv_stride)} given")
        if hidden_size % num_attention_heads:
            raise ValueError(f"hidden_size {hidden_size} is not a multiple of num_attention_heads "
                             f"{num_attention_heads}")
        if feat_extract_norm not in ("layer", "group"):
            raise ValueError(f"feat_extract_norm must be 'layer' or 'group', not {feat_extract_norm!r}")
        fields = dict(
            hidden_size=hidden_size, num_hidden_layers=num_hidden_layers, num_attention_heads=num_attention_heads,
            intermediate_size=intermediate_size, hidden_act=hidden_act, layer_norm_first=layer_norm_first,
            layer_norm_eps=layer_norm_eps, norm_affine=norm_affine, conv_dim=list(conv_dim),
            conv_kernel=list(conv_kernel), conv_stride=list(conv_stride), num_feat_extract_layers=len(conv_dim),
            conv_bias=conv_bias, feat_extract_norm=feat_extract_norm, feat_extract_activation=feat_extract_activation,
            feature_layer_norm_eps=feature_layer_norm_eps, num_conv_pos_layers=num_conv_pos_layers,
            conv_pos_kernel_size=conv_pos_kernel_size, num_conv_pos_embedding_groups=num_conv_pos_embedding_groups,
            conv_pos_pre_layer_norm=conv_pos_pre_layer_norm, num_prenet_layers=num_prenet_layers, use_alibi=use_alibi,
            num_alibi_heads=num_attention_heads if num_alibi_heads is None else num_alibi_heads,
            alibi_scale_per_head=alibi_scale_per_head, alibi_scale_per_layer=alibi_scale_per_layer,
            alibi_scale_init=alibi_scale_init, hidden_dropout=hidden_dropout, attention_dropout=attention_dropout,
            activation_dropout=activation_dropout, post_mlp_dropout=post_mlp_dropout, prenet_dropout=prenet_dropout,
            feat_proj_dropout=feat_proj_dropout, layerdrop=layerdrop, initializer_range=initializer_range)
        for name, value in fields.items():
            setattr(self, name, value)
