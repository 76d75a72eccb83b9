"""Probing as the published numbers were computed (issue #22): the ``ma2023`` / ``marble`` / ``mulap`` presets
follow the authors' released code (MARBLE-Benchmark, ilaria-manco/mulap), the paper text one switch away.

Pinned here, on fake trees and tiny features: which hidden states the weighted sum reads (MARBLE: the 12
Transformer outputs, ``feature[1:]``), its N(0, 1) start and dropout after the hidden layer only; MARBLE's
per-task schedule (plateau 3/5/6, early stop 10/20, NSynth 50 epochs, torch's relative plateau threshold, the
6-rate sweep) and MuLaP's (factor .5, early stop 50, per-task weight decay); windows encoded alone (a tiny
transformers model called on each window), MARBLE's waveform z-score and VocalSet chunks (silence trimmed,
each chunk z-scored, remainder dropped); VocalSet's and MuLaP's MTT splits from the authors' lists, refused
without them.
"""
import dataclasses
import json

import numpy as np
import pytest
import soundfile as sf
import torch

from test_probe_datasets import touch_audio
from test_probe_train import one_thread, small_grid, synthetic_data  # noqa: F401 (autouse fixture)

from music_ssl.data.audio import read_audio
from music_ssl.probe import run_probe
from music_ssl.probe.datasets import load_probe_dataset
from music_ssl.probe.datasets.mtt import MULAP_TEST_DROPPED
from music_ssl.probe.datasets.vocalset import SINGERS, TECHNIQUES
from music_ssl.probe.errors import MissingDataError, ProbeConfigError, ProbeDataError
from music_ssl.probe.features import build_source
from music_ssl.probe.features.cache import FEATURE_CODE_VERSION, cache_key
from music_ssl.probe.features.encoding import Encoding, read_prepared, window_spans, zscore
from music_ssl.probe.probes import SingleProbe, StackedProbes
from music_ssl.probe.protocols import (MARBLE_HEAD, MARBLE_LRS, WEIGHTED_SUM, HeadSettings, ProbeConfig,
                                       TrainSettings, get_protocol)
from music_ssl.probe.trainer import train_batched, train_sequential

transformers = pytest.importorskip("transformers")
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, conv_dim=[16] * 7,
            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)


@pytest.fixture(scope="module")
def tiny_hf(tmp_path_factory):
    """A tiny random Data2VecAudioModel folder (music2vec-v1's class; no preprocessor: 16 kHz, no normalisation)."""
    folder = tmp_path_factory.mktemp("tiny_hf")
    torch.manual_seed(0)
    model = transformers.Data2VecAudioModel(transformers.Data2VecAudioConfig(**TINY)).eval()
    model.save_pretrained(folder)
    return folder, model


def noise_wav(path, seconds, rate=16000, seed=0, silence=0.0):
    """White noise (0.1 rms) after ``silence`` seconds of zeros."""
    rng = np.random.default_rng(seed)
    audio = np.concatenate([np.zeros(int(silence * rate)), 0.1 * rng.standard_normal(int(seconds * rate))])
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio.astype(np.float32), rate)
    return path


# ---------------------------------------------------------------- 1: the weighted sum of MARBLE's code

def named_data(kind="multiclass", seed=0):
    data = synthetic_data(kind, seed=seed, num_states=3)
    data.layer_names = ["input", "layer1", "layer2"]
    return data


def test_marble_sum_mixes_the_transformer_outputs_only_and_the_text_all_states():
    ma, marble = get_protocol("ma2023"), get_protocol("marble")
    assert ma.head == marble.head == MARBLE_HEAD == HeadSettings("layers", "normal", False)
    assert HeadSettings().sum_from(["input", "layer1"]) == 0 and MARBLE_HEAD.sum_from(["input", "layer1"]) == 1
    assert MARBLE_HEAD.sum_from(["layer3", "layer6"]) == 0  # source.layers without state 0: nothing to leave out
    x = torch.randn(3, 5, 4)
    x[0] = 1e3  # state 0 would dominate any sum that reads it
    config = ProbeConfig(layer=WEIGHTED_SUM, hidden=0, dropout=0.0)
    for head, states in ((MARBLE_HEAD, x[1:]), (HeadSettings(sum_states="all"), x)):
        stack = StackedProbes.create([config], 3, 4, 2, "cpu", head, head.sum_from(["input", "l1", "l2"]))
        assert stack.mix.shape == (1, len(states))
        mixed = torch.einsum("s,snc->nc", stack.mix[0].softmax(0), states)
        expected = mixed @ stack.w_out[0] + stack.b_out[0]
        torch.testing.assert_close(stack(stack.inputs(x))[0], expected)
        single = SingleProbe(config, 3, 4, 2, "cpu", head, head.sum_from(["input", "l1", "l2"]))
        torch.testing.assert_close(single.mix.detach(), stack.mix[0].detach())  # same start alone or stacked
    normal = StackedProbes.create([config], 3, 4, 2, "cpu", MARBLE_HEAD, 1).mix
    assert normal.abs().min() > 0 and not torch.equal(normal, torch.zeros_like(normal))  # torch.randn, not zeros


def test_marble_head_trains_the_same_batched_and_sequential():
    data = named_data()
    configs = [dataclasses.replace(c, layer=layer) for c in small_grid() for layer in (WEIGHTED_SUM, 2)]
    settings = TrainSettings(eval_every=2, patience=4, max_epochs=6, lr_factor=0.5, lr_patience=1, lr_threshold=0.05)
    batched = train_batched(configs, data, settings, progress=False, head=MARBLE_HEAD)
    sequential = train_sequential(configs, data, settings, progress=False, head=MARBLE_HEAD)
    np.testing.assert_array_equal(batched.steps, sequential.steps)
    np.testing.assert_allclose(batched.logits["test"], sequential.logits["test"], atol=1e-4)
    text = train_batched(configs, data, settings, progress=False, head=dataclasses.replace(MARBLE_HEAD,
                                                                                           sum_states="all"))
    summed = [i for i, c in enumerate(configs) if c.layer == WEIGHTED_SUM]
    assert not np.allclose(text.logits["test"][summed], batched.logits["test"][summed], atol=1e-3)


def test_dropout_acts_after_the_hidden_layer_only():
    """MARBLE (input_dropout=False): Linear -> ReLU -> dropout -> Linear, the input untouched; JukeMIR drops both."""
    from music_ssl.probe import randomness as rnd
    from music_ssl.probe.probes import apply_dropout

    x = torch.randn(3, 16, 4)
    mlp, linear = ProbeConfig(layer=1, hidden=8, dropout=0.5), ProbeConfig(layer=1, hidden=0, dropout=0.5)
    marble = StackedProbes.create([mlp], 3, 4, 2, "cpu", MARBLE_HEAD)
    hidden = torch.relu(torch.baddbmm(marble.b_hidden, x[1:2], marble.w_hidden))
    dropped = apply_dropout(hidden, marble.keys, 7, rnd.DROPOUT_HIDDEN, marble.threshold, marble.scale)
    torch.testing.assert_close(marble(marble.inputs(x), 7), torch.baddbmm(marble.b_out, dropped, marble.w_out))
    no_dropout = StackedProbes.create([linear], 3, 4, 2, "cpu", MARBLE_HEAD)
    torch.testing.assert_close(no_dropout(no_dropout.inputs(x), 7), no_dropout(no_dropout.inputs(x)))
    jukemir = StackedProbes.create([linear], 3, 4, 2, "cpu", HeadSettings())
    assert not torch.allclose(jukemir(jukemir.inputs(x), 7), jukemir(jukemir.inputs(x)))
    single = SingleProbe(linear, 3, 4, 2, "cpu", MARBLE_HEAD)  # the sequential reference agrees
    torch.testing.assert_close(single(x[1], 7), single(x[1]))


# ---------------------------------------------------------------- 4: per-task schedules

def test_marble_schedule_per_task_and_the_run_override_wins():
    expected = {"mtt_top50": (3, 10, 100), "mtg_genre": (3, 10, 100), "nsynth_pitch": (3, 10, 50),
                "nsynth_instrument": (3, 10, 50), "emomusic": (5, 20, 100), "giantsteps_key": (5, 20, 100),
                "vocalset_singer": (5, 20, 100), "vocalset_technique": (5, 10, 100), "gtzan_genre": (6, 20, 100),
                "gtzan_beat": (6, 20, 100), "my_csv_task": (5, 20, 100)}
    for name in ("ma2023", "marble"):
        protocol = get_protocol(name)
        for task, (plateau, stop, epochs) in expected.items():
            s = protocol.settings_for(task)
            assert (s.lr_patience, s.patience, s.max_epochs, s.lr_factor, s.lr_threshold) == (
                plateau, stop, epochs, 0.5, 1e-4), (name, task)
    assert get_protocol("marble").settings_for("nsynth_pitch", {"max_epochs": 2}).max_epochs == 2  # the run's wins
    with pytest.raises(ProbeConfigError, match="unknown protocol.train keys"):
        get_protocol("marble").settings_for("mtt_top50", {"epochs": 2})
    assert [c.lr for c in get_protocol("marble").grid] == list(MARBLE_LRS) and 5e-5 in MARBLE_LRS
    grid = get_protocol("marble").grid
    assert {(c.dropout, c.l2, c.batch_size, c.standardize) for c in grid} == {(0.2, 0.0, 64, False)}
    assert get_protocol("ma2023").seeds == [0]  # MARBLE: one run (trainer.seed 1234)


def test_mulap_schedule_and_grid_follow_its_code():
    mulap = get_protocol("mulap")
    s = mulap.settings_for("nsynth_instrument")
    assert (s.lr_factor, s.lr_patience, s.patience, s.max_epochs, s.lr_threshold) == (0.5, 10, 50, 200, 1e-4)
    assert mulap.settings_for("mtt_top50").max_epochs == 300
    assert [(c.l2, c.hidden, c.batch_size) for c in mulap.grid_for("mtt_top50")] == [(1e-3, 512, 64)]
    assert [(c.l2, c.hidden) for c in mulap.grid_for("emomusic")] == [(0.01, 1024)]
    assert [(c.l2, c.batch_size) for c in mulap.grid_for("mtg_top50")] == [(0.0, 32)]


def test_plateau_threshold_is_torch_relative_threshold():
    data = named_data(seed=3)
    configs = small_grid()
    settings = TrainSettings(eval_every=1, patience=None, max_epochs=8, lr_factor=0.3, lr_patience=0,
                             lr_threshold=0.2)
    batched = train_batched(configs, data, settings, progress=False)
    sequential = train_sequential(configs, data, settings, progress=False)  # torch's ReduceLROnPlateau
    np.testing.assert_allclose(batched.logits["test"], sequential.logits["test"], atol=1e-4)
    plain = train_batched(configs, data, dataclasses.replace(settings, lr_threshold=0.0), progress=False)
    assert not np.allclose(plain.logits["test"], batched.logits["test"], atol=1e-4)


# ---------------------------------------------------------------- 2: windows encoded alone

def test_window_spans_keep_a_last_window_of_at_least_min_seconds():
    assert window_spans(45 * 10, 10, 30.0, 30.0, 1.0) == [(0, 300), (300, 450)]  # MARBLE EMO: 0-30, 30-45 s
    assert window_spans(305, 10, 30.0, 30.0, 1.0) == [(0, 300)]  # GTZAN's 30.5 s: the 0.5-s tail dropped
    assert window_spans(95, 10, 3.0, 3.0, None) == [(0, 30), (30, 60), (60, 90)]  # MuLaP: partial chunk dropped
    assert window_spans(20, 10, 3.0, 3.0, None) == [(0, 20)]  # shorter than a window: the whole file
    assert window_spans(290, 10, 30.0, 30.0, 1.0) == [(0, 290)]  # MTT's 29 s: one window


def test_each_window_is_encoded_alone_and_the_cache_key_says_so(tiny_hf, tmp_path):
    folder, model = tiny_hf
    path = noise_wav(tmp_path / "a.wav", 3.5)
    source = build_source("hf", folder, device="cpu")
    encoding = Encoding("window", 1.0, 1.0, 0.4, None, "file", False)
    (alone,), names, rate = source.extract([path], "window", 1.0, 1.0, encoding=encoding)
    audio = zscore(read_audio(path, 16000)[0])  # MARBLE: the whole file z-scored (eps 1e-7), then cut
    reference = []
    for a, b in [(0, 16000), (16000, 32000), (32000, 48000), (48000, 56000)]:  # the 0.5-s tail >= 0.4 s: kept
        with torch.no_grad():
            states = model(torch.from_numpy(audio[a:b])[None], output_hidden_states=True).hidden_states
        reference.append(np.stack([h[0].mean(0).numpy() for h in states]))
    assert names == ["input", "layer1", "layer2"] and alone.shape == (4, 3, 32)
    np.testing.assert_allclose(alone, np.stack(reference), atol=1e-4)
    (in_context,), _, _ = source.extract([path], "window", 1.0, 1.0)  # windows pooled from the whole file
    assert in_context.shape == (3, 3, 32) and not np.allclose(in_context, alone[:3], atol=1e-2)
    own = Encoding("window", 1.0, 1.0, None, None, "window", False)  # each window z-scored, tail dropped
    (per_window,), _, _ = source.extract([path], "window", 1.0, 1.0, encoding=own)
    assert per_window.shape == (3, 3, 32)
    keys = {cache_key(source, [path], "window", 1.0, 1.0, e) for e in (Encoding(), encoding, own)}
    assert len(keys) == 3 and FEATURE_CODE_VERSION >= 3


def test_vocalset_chunks_trim_leading_silence_z_score_and_drop_the_remainder(tmp_path):
    rule = get_protocol("ma2023").rules_for("vocalset_technique", "multiclass")
    encoding = Encoding(rule["encode"], rule["window_seconds"], rule["hop_seconds"], rule["min_window_seconds"],
                        None, rule["waveform_norm"], rule["trim_silence"])
    assert rule["window_seconds"] == pytest.approx(132000 / 44100)  # MARBLE: sr // 1000 * 3000 samples at 44.1 kHz
    path = noise_wav(tmp_path / "take.wav", 7.0, rate=44100, silence=2.0)
    windows = read_prepared(path, 16000, encoding)
    assert len(windows) == 2  # ~7.1 s of sound after the VAD: two 2.99-s chunks, the rest dropped
    assert all(len(w) == round(132000 / 44100 * 16000) for w in windows)
    for w in windows:
        assert abs(float(w.mean())) < 1e-4 and float(w.std()) == pytest.approx(1.0, abs=1e-3)
    assert np.abs(windows[0][:4800]).max() > 0.5  # sound within 0.3 s: the VAD left ~0.1 s of the 2-s silence
    untrimmed = read_prepared(path, 16000, dataclasses.replace(encoding, trim_silence=False))
    assert len(untrimmed) == 3 and np.ptp(untrimmed[0][:16000]) < 1e-6  # 9 s: the silence stays (a constant)


# ---------------------------------------------------------------- 5: splits from the authors' lists

def write_vocalset(root, takes=2):
    """FULL/<singer>/scales/<technique>/<file>.wav for 4 singers x 3 techniques; f2's lip trill lacks the singer
    prefix (as in the official zip). Returns MARBLE-style chunk names per recording."""
    names = {}
    for singer in ("f1", "f2", "f6", "m3"):
        for technique in ("belt", "lip_trill", "fast_forte"):
            for take in range(takes):
                stem = f"scales_{technique}_{take}" if singer == "f2" and technique == "lip_trill" else \
                    f"{singer}_scales_{technique}_{take}"
                touch_audio(root / "FULL" / singer / "scales" / technique / f"{stem}.wav", 0.01)
                names[(singer, technique, take)] = f"{technique}/{singer}_scales_{technique}_{take}"
    return names


def test_vocalset_marble_split_comes_from_its_lists_and_the_text_is_one_switch_away(tmp_path):
    names = write_vocalset(tmp_path)
    with pytest.raises(MissingDataError, match=r"train_t\.txt: missing MARBLE's VocalSet technique split list .* "
                                               r"benchmark/tasks/VocalSet/preprocess\.py .* split: text"):
        load_probe_dataset("vocalset_technique", root=tmp_path, split="marble")
    want = {("f1", 0): "train", ("f1", 1): "valid", ("f6", 0): "valid", ("f6", 1): "train", ("f2", 0): "test",
            ("f2", 1): "test"}  # by recording: one singer in train and valid (the code), not by singer (the text)
    for split in ("train", "valid", "test"):
        lines = [f"{names[(s, t, k)]}_{c:02d}.wav" for (s, k), sp in want.items() if sp == split
                 for t in ("belt", "lip_trill") for c in range(2)]
        (tmp_path / f"{split}_t.txt").write_text("\n".join(lines) + "\n")
    task = load_probe_dataset("vocalset_technique", root=tmp_path,
                              **get_protocol("marble").rules_for("vocalset_technique", "multiclass"))
    got = {(i.path.parts[-4], int(i.path.stem[-1]), i.label): i.split for i in task.items}
    assert got == {(s, k, t): sp for (s, k), sp in want.items() for t in ("belt", "lip_trill")}  # f2 prefix added
    assert task.skipped == {"technique outside the 10 of Wilkins et al.": 8,
                            "recording in none of MARBLE's split lists": 4}  # m3's recordings
    assert (task.encode, task.trim_silence, task.waveform_norm, task.aggregate) == ("window", True, "window", None)
    text = load_probe_dataset("vocalset_technique", root=tmp_path, split="text")
    assert [{i.path.parts[-4] for i in text.split_items(s)} for s in ("train", "valid", "test")] == [
        {"f1"}, {"f6"}, {"f2", "m3"}]  # by singer
    (tmp_path / "test_t.txt").write_text((tmp_path / "test_t.txt").read_text() + "belt/f1_scales_belt_0_03.wav\n")
    with pytest.raises(ProbeDataError, match=r"test_t\.txt:9: chunks of belt/f1_scales_belt_0 are in the train and"):
        load_probe_dataset("vocalset_technique", root=tmp_path, split="marble")


def test_vocalset_singer_marble_lists_cover_all_17_techniques(tmp_path):
    names = write_vocalset(tmp_path, takes=1)
    splits = ("train", "valid", "test")
    for k, split in enumerate(splits):
        picked = [n for i, n in enumerate(sorted(names.values())) if i % 3 == k]
        (tmp_path / f"{split}_s.txt").write_text("\n".join(f"{n}_00.wav" for n in picked) + "\n")
    task = load_probe_dataset("vocalset_singer", root=tmp_path, split="marble")
    assert len(task.items) == 12 and not task.skipped and {i.label for i in task.items} <= set(SINGERS)
    assert "fast_forte" in {i.path.parts[-2] for i in task.items}  # not only the 10 techniques
    assert set(TECHNIQUES) > {"belt", "lip_trill"}


def write_mtt(root, clips):
    rows = ["clip_id\tguitar\tpiano\tmp3_path"] + [f"{i}\t1\t{i % 2}\t{p}" for i, p in enumerate(clips)]
    root.mkdir(parents=True, exist_ok=True)
    (root / "annotations_final.csv").write_text("\n".join(rows) + "\n")
    for p in clips:
        touch_audio(root / p)


def test_mulap_mtt_split_is_read_from_its_lists(tmp_path):
    clips = ["0/a.mp3", "0/b.mp3", "1/c.mp3", "c/d.mp3", "d/e.mp3", MULAP_TEST_DROPPED]
    write_mtt(tmp_path, clips)
    rules = get_protocol("mulap").rules_for("mtt_top50", "multilabel")
    with pytest.raises(MissingDataError, match=r"train\.npy: missing MuLaP's MTT split list .* split: folders"):
        load_probe_dataset("mtt_top50", root=tmp_path, **rules)
    lists = {"train": ["0\t0/a.mp3", "3\tc/d.mp3"], "valid": ["1\t0/b.mp3"], "test": ["4\td/e.mp3",
                                                                                   f"5\t{MULAP_TEST_DROPPED}"]}
    for split, lines in lists.items():
        np.save(tmp_path / f"{split}.npy", np.array(lines))
    task = load_probe_dataset("mtt_top50", root=tmp_path, **rules)
    assert {i.path.relative_to(tmp_path).as_posix(): i.split for i in task.items} == {
        "0/a.mp3": "train", "c/d.mp3": "train", "0/b.mp3": "valid", "d/e.mp3": "test"}
    assert task.skipped == {"clip outside MuLaP's filtered split": 1, "left out of test by MuLaP's code": 1}
    folders = load_probe_dataset("mtt_top50", root=tmp_path)  # the default: 12:1:3 by folder (MARBLE, JukeMIR)
    assert {i.path.name: i.split for i in folders.items}["d.mp3"] == "valid"


# ---------------------------------------------------------------- one run through the ma2023 preset

def test_ma2023_run_reads_vocalset_as_marble_did(tiny_hf, tmp_path):
    """VocalSet technique under ma2023 with MARBLE's lists: chunks encoded alone, the 12-layer sum (here 2),
    VocalSetT's schedule; ``protocol.sum_states=all`` gives the text's reading."""
    folder, _ = tiny_hf
    for k, singer in enumerate(("f1", "f3", "m3")):
        for t, technique in enumerate(("belt", "vibrato")):
            noise_wav(tmp_path / "VS" / "FULL" / singer / "scales" / technique / f"{singer}_{technique}.wav", 6.5,
                      seed=10 * k + t, silence=0.5)
    for split, singer in (("train", "f1"), ("valid", "f3"), ("test", "m3")):
        (tmp_path / "VS" / f"{split}_t.txt").write_text(
            "".join(f"{t}/{singer}_{t}_{c:02d}.wav\n" for t in ("belt", "vibrato") for c in range(2)))
    cfg = {"source": {"kind": "hf", "path": str(folder)}, "device": "cpu", "progress": False,
           "cache_dir": str(tmp_path / "cache"), "out_dir": str(tmp_path / "out"),
           "tasks": [{"name": "vocalset_technique", "root": str(tmp_path / "VS")}],
           "protocol": {"name": "ma2023", "train": {"max_epochs": 2}}}
    info = run_probe(cfg)["tasks"]["vocalset_technique"]
    assert info["summed_states"] == ["layer1", "layer2"] and info["head"]["input_dropout"] is False
    assert (info["settings"]["lr_patience"], info["settings"]["patience"], info["settings"]["max_epochs"]) == (5, 10, 2)
    assert info["encoding"]["encode"] == "window" and info["encoding"]["trim_silence"]
    assert info["rows"]["train"] == 4  # 2 recordings x 2 chunks (6.5 s of sound, the rest dropped)
    text = run_probe({**cfg, "out_dir": str(tmp_path / "out2"), "protocol": {**cfg["protocol"], "sum_states": "all"}})
    assert text["tasks"]["vocalset_technique"]["summed_states"] == ["input", "layer1", "layer2"]
    assert text["tasks"]["vocalset_technique"]["feature_cache"] == "hit"  # same features, another sum
    json.dumps(text["tasks"])


# ---------------------------------------------------------------- 3: beat tracking as MARBLE trains it

def beat_data(beat_training: str):
    """A beat task of 3 train files (600, 700, 800 frames at 50 Hz), 1 valid and 1 test, assembled."""
    from music_ssl.probe.assemble import assemble
    from music_ssl.probe.datasets.dataset import Item, ProbeDataset
    from music_ssl.probe.features.cache import FeatureSet

    frames = [600, 700, 800, 300, 300]
    items = [Item(f"f{i}.wav", np.arange(0.5, n / 50, 0.5), s) for i, (n, s) in
             enumerate(zip(frames, ["train", "train", "train", "valid", "test"]))]
    task = ProbeDataset("beat", "beat", items, pooling="frames", beat_neighbour_weight=1.0,
                        beat_training=beat_training)
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal((n, 2, 4)).astype(np.float16) for n in frames]
    return assemble(task, FeatureSet(arrays, ["input", "layer1"], 50.0, False), "cpu")


def test_marble_beat_batches_are_10s_crops_of_distinct_files_and_neighbours_train_only():
    data = beat_data("marble")
    train, valid = data.splits["train"], data.splits["valid"]
    assert train.crop_frames == 500 and valid.dbn == (50.0, 0.07, "pooled") and data.epoch_items == 3
    assert data.batch_size(64) == 3  # at most one crop per file
    keys = torch.tensor([11, 12])
    index = data.sample_train(keys, 5, 2)  # (P, 2 crops x 500 frames)
    assert index.shape == (2, 1000)
    for row in index:
        crops = row.view(2, 500)
        assert (crops.diff(dim=1) == 1).all()  # consecutive frames
        file_of = [int(np.searchsorted([0, 600, 1300, 2100], int(c[0]), side="right")) - 1 for c in crops]
        bounds = [(0, 600), (600, 1300), (1300, 2100)]
        assert len(set(file_of)) == 2 and all(bounds[f][0] <= c[0] and c[-1] < bounds[f][1]
                                              for f, c in zip(file_of, crops))
    assert not torch.equal(index, data.sample_train(keys, 6, 2))  # a new draw every step
    assert int((valid.y[:, 0] == 1).sum()) == len(np.arange(0.5, 6, 0.5))  # valid: the beat frames only
    assert int((train.y[:600, 0] == 1).sum()) == 3 * len(np.arange(0.5, 12, 0.5))  # train: beat and both neighbours
    frames = beat_data("frames")
    assert frames.splits["train"].crop_frames is None and frames.splits["valid"].dbn is None
    assert int((frames.splits["valid"].y[:, 0] == 1).sum()) == 3 * len(np.arange(0.5, 6, 0.5))


def test_marble_beat_early_stops_on_valid_dbn_f_batched_as_sequential():
    data = beat_data("marble")
    configs = [ProbeConfig(layer=1, hidden=0, dropout=0.0, lr=lr, batch_size=64) for lr in (1e-2, 1e-3)]
    settings = TrainSettings(eval_every_epochs=1, patience=3, max_epochs=6, lr_factor=0.5, lr_patience=1)
    batched = train_batched(configs, data, settings, progress=False, head=MARBLE_HEAD)
    sequential = train_sequential(configs, data, settings, progress=False, head=MARBLE_HEAD)
    np.testing.assert_array_equal(batched.steps, sequential.steps)
    np.testing.assert_allclose(batched.logits["valid"], sequential.logits["valid"], atol=1e-4)
    library = [data.type.evaluate({"valid": batched.logits["valid"][p]}, data)["valid"]["primary"] for p in (0, 1)]
    np.testing.assert_allclose(batched.best_valid, library, atol=1e-6)  # the kept point's valid beat F (DBN)


def test_ma2023_beat_run_says_which_training_ran(tmp_path):
    from test_probe_train import write_demo_like_corpus

    write_demo_like_corpus(tmp_path / "corpus", n=10)
    task = {"name": "csv", "path": str(tmp_path / "corpus" / "beat.csv"), "type": "beat"}
    cfg = {"source": {"kind": "mfcc"}, "device": "cpu", "progress": False, "cache_dir": str(tmp_path / "cache"),
           "out_dir": str(tmp_path / "out"), "tasks": [task],
           "protocol": {"name": "ma2023", "train": {"max_epochs": 3}}}
    marble = run_probe(cfg)
    assert marble["tasks"]["beat"]["beat_training"] == "marble" and marble["tasks"]["beat"]["beat_crop_frames"] > 0
    (probe,) = marble["probes"]
    assert probe["valid_primary_batched"] == pytest.approx(probe["valid_primary_selection"])  # both the DBN F
    cheap = run_probe({**cfg, "tasks": [{**task, "beat_training": "frames"}], "out_dir": str(tmp_path / "out2")})
    assert cheap["tasks"]["beat"]["beat_training"] == "frames" and cheap["tasks"]["beat"]["beat_crop_frames"] is None


def test_list_protocols_says_paper_text_code_and_ours_for_every_setting(capsys):
    from music_ssl.cli.probe import main

    for name in ("ma2023", "marble", "mulap"):
        rows = get_protocol(name).rows
        assert len(rows) >= 9 and all(len(r) == 4 and all(str(c).strip() for c in r) for r in rows), name
        assert len({r[0] for r in rows}) == len(rows)  # one row per setting
    main(list_protocols_=True)
    out = capsys.readouterr().out
    assert out.count("paper text") >= 3 and out.count("authors' code") >= 3
    for needle in ("benchmark/models/probers.py", "feature[1:]", "probe_m2v.sh", "VocalSet/preprocess.py",
                   "GTZANBT_prober.py", "mulap/datasets/tagging.py", "downstream_trainer.py"):
        assert needle in out, needle
