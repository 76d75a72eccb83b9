"""Fast paths of the models: attention through SDPA and the fp32 positional convolution equal the stock path."""
import pytest
import torch
from fairseq.data import Dictionary
from fairseq.tasks.hubert_pretraining import HubertPretrainingConfig

import music_ssl  # noqa: F401
from music_ssl.models.fast_paths import SdpaSelfAttention
from music_ssl.models.music_hubert import MusicHubertConfig, MusicHubertModel
from test_models import TINY_CONV, tiny_music2vec

torch.set_num_threads(1)
NO_DROPOUT = dict(dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, dropout_input=0.0, dropout_features=0.0)


def tiny_hubert(**overrides) -> MusicHubertModel:
    settings = dict(conv_feature_layers=TINY_CONV, encoder_layers=2, encoder_embed_dim=32, encoder_ffn_embed_dim=64,
                    encoder_attention_heads=2, final_dim=16, conv_pos=16, conv_pos_groups=4, mask_prob=0.5,
                    mask_length=3, label_rate=50, encoder_layerdrop=0.0)
    dictionary = Dictionary()
    for symbol in range(8):
        dictionary.add_symbol(str(symbol))
    torch.manual_seed(0)
    return MusicHubertModel(MusicHubertConfig(**{**settings, **overrides}), HubertPretrainingConfig(label_rate=50),
                            [dictionary])


BUILDERS = {"music2vec": tiny_music2vec, "music_hubert": tiny_hubert}


def batch(padded: bool):
    """(3, 16000) audio and its (3, 16000) padding mask: rows 1, 2 end early when ``padded``, else all False."""
    torch.manual_seed(1)
    audio = torch.randn(3, 16000)
    mask = torch.zeros(3, 16000, dtype=torch.bool)
    if padded:
        mask[1, 12000:], mask[2, 7000:] = True, True
        audio[mask] = 0.0
    return audio, mask


class SdpaCalls:
    """Counts calls of torch's scaled_dot_product_attention and records whether each had a mask."""

    def __init__(self, monkeypatch):
        self.masks = []
        original = torch.nn.functional.scaled_dot_product_attention

        def counting(*args, **kwargs):
            self.masks.append(args[3] if len(args) > 3 else kwargs.get("attn_mask"))  # (q, k, v, attn_mask, ...)
            return original(*args, **kwargs)

        monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", counting)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_stock_attention_reaches_sdpa_but_with_a_mask_for_an_unpadded_batch(monkeypatch, name):
    model = BUILDERS[name](**NO_DROPOUT).eval()
    calls = SdpaCalls(monkeypatch)
    audio, mask = batch(padded=False)
    with torch.no_grad():
        model.extract_features(audio, padding_mask=mask, mask=False) if name == "music_hubert" else \
            model(audio, padding_mask=mask, mask=False, features_only=True)
    assert len(calls.masks) == len(model.encoder.layers), "fairseq's MultiheadAttention ends in SDPA"
    if name == "music_hubert":  # HuBERT keeps the all-False mask: SDPA gets a mask (no flash kernel on a GPU)
        assert all(m is not None for m in calls.masks)


def outputs_and_grads(name: str, sdpa: bool, padded: bool):
    model = BUILDERS[name](sdpa_attention=sdpa, **NO_DROPOUT).train()
    audio, mask = batch(padded)
    if name == "music_hubert":
        x, frame_mask = model.extract_features(audio, padding_mask=mask, mask=False)
    else:
        out = model(audio, padding_mask=mask, mask=False, features_only=True)
        x, frame_mask = out["x"], out["padding_mask"]
    keep = torch.ones_like(x[..., 0]) if frame_mask is None else (~frame_mask).float()
    (x * keep[..., None]).pow(2).mean().backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    return model, (x * keep[..., None]).detach(), grads


@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_sdpa_attention_equals_the_stock_path_in_outputs_and_gradients(name, padded):
    stock_model, stock_x, stock_grads = outputs_and_grads(name, False, padded)
    model, x, grads = outputs_and_grads(name, True, padded)
    assert all(type(layer.self_attn) is SdpaSelfAttention for layer in model.encoder.layers)
    assert model.state_dict().keys() == stock_model.state_dict().keys(), "checkpoints keep fairseq's keys"
    torch.testing.assert_close(x, stock_x, rtol=1e-5, atol=1e-5)
    assert grads.keys() == stock_grads.keys() and len(grads) > 10
    for key in grads:
        torch.testing.assert_close(grads[key], stock_grads[key], rtol=1e-4, atol=1e-6, msg=key)


def test_sdpa_attention_runs_unmasked_for_an_unpadded_batch_and_masked_otherwise(monkeypatch):
    model = tiny_hubert(sdpa_attention=True, **NO_DROPOUT).eval()
    calls = SdpaCalls(monkeypatch)
    for padded in (False, True):
        with torch.no_grad():
            model.extract_features(*batch(padded), mask=False)
    layers = len(model.encoder.layers)
    masks = calls.masks
    assert len(masks) == 2 * layers
    # 49 frames are padded to 50 (required_seq_len_multiple=2), so the unpadded batch still masks that one frame
    assert all(m is not None and m.dtype == torch.bool for m in masks)
    assert all(m.shape == (3, 1, 1, 50) for m in masks)
    assert not masks[0][:, :, :, :49].logical_not().any(), "no real frame is masked"
    assert masks[-1][1:, 0, 0, :49].logical_not().any(), "padded rows mask their padding"


def test_sdpa_attention_with_no_padding_at_all_gets_no_mask(monkeypatch):
    model = tiny_hubert(sdpa_attention=True, required_seq_len_multiple=1, **NO_DROPOUT).eval()
    calls = SdpaCalls(monkeypatch)
    with torch.no_grad():
        model.extract_features(*batch(False), mask=False)
    assert calls.masks == [None] * len(model.encoder.layers), "flash-eligible: no mask at all"


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_fp32_positional_conv_is_identical_in_fp32_and_fp32_under_bf16_autocast(name):
    dtypes = {}
    results = {}
    for flag in (False, True):
        model = BUILDERS[name](pos_conv_fp32=flag, **NO_DROPOUT).eval()
        model.encoder.pos_conv.register_forward_hook(lambda m, i, o, flag=flag: dtypes.setdefault(flag, []).append(o.dtype))
        audio, mask = batch(True)
        with torch.no_grad():
            results[flag] = model.extract_features(audio, padding_mask=mask, mask=False)[0] if name == "music_hubert" \
                else model(audio, padding_mask=mask, mask=False, features_only=True)["x"]
            with torch.autocast("cpu", dtype=torch.bfloat16):
                model.extract_features(audio, padding_mask=mask, mask=False) if name == "music_hubert" else \
                    model(audio, padding_mask=mask, mask=False, features_only=True)
    assert torch.equal(results[True], results[False]), "bit-identical without autocast"
    assert dtypes[False] == [torch.float32, torch.bfloat16], "stock: the conv runs in bf16 under autocast"
    assert dtypes[True] == [torch.float32, torch.float32], "ours: fp32 under autocast too"
