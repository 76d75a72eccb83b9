"""Beat training crops encoded alone, as MARBLE trains beat tracking (issue #22 item 3).

MARBLE's ``GTZANBT_dataset.py`` cuts a random 10-s crop from the audio, z-scores it and encodes it alone; valid and
test are whole 30-s files. Ours (``assemble.BeatCrops``, ``beat_crop_encode: window``): the train files are
encoded as crops alone on a grid of starts every ``beat_crop_hop_seconds``, each crop a training "file" with its
beats shifted by its start, valid / test whole files. Pinned here with a tiny transformers encoder (positional
convolution and attention: a frame sees its neighbours, so a crop's edge frames differ from the whole file's) on
1-s crops every 0.5 s of 2-3-s files: (a) a train crop's features are the encoder run on that crop's audio alone,
(b) labels are shifted by the crop's start (a beat just before the crop still marks its neighbour, as MARBLE's
slice of the whole file's labels does), (c) valid and test are whole files, (d) ``beat_crop_encode: file`` is the
earlier path, draw for draw.
"""
import numpy as np
import pytest
import soundfile as sf
import torch

from test_probe_marble_code import tiny_hf  # noqa: F401 (module fixture: a tiny Data2VecAudioModel folder)
from test_probe_train import one_thread  # noqa: F401 (autouse fixture)

from music_ssl.data.audio import read_audio
from music_ssl.probe import randomness as rnd
from music_ssl.probe import run_probe
from music_ssl.probe.assemble import BeatCrops, assemble
from music_ssl.probe.beat import beat_targets
from music_ssl.probe.datasets.dataset import Item, ProbeDataset
from music_ssl.probe.errors import ProbeConfigError
from music_ssl.probe.features import build_source
from music_ssl.probe.features.cache import cache_key
from music_ssl.probe.features.encoding import Encoding, crop_encoding, zscore
from music_ssl.probe.protocols import get_protocol
from music_ssl.probe.runner import task_features

CROP, HOP, RATE = 1.0, 0.5, 16000  # 1-s crops (49 frames at 50 Hz) every 0.5 s (25 frames)
BEATS = np.array([0.24, 0.6, 0.98, 1.5, 1.98, 2.5])  # 0.98 s = frame 49: one frame before the crop starting at 1 s


def write_noise(path, seconds, seed):
    rng = np.random.default_rng(seed)
    sf.write(path, (0.1 * rng.standard_normal(int(seconds * RATE))).astype(np.float32), RATE)
    return path


def beat_task(tmp_path) -> ProbeDataset:
    """Train: a 3-s and a 2-s file; valid and test: one 3-s file each; beats ``BEATS`` inside each file."""
    specs = [(3.0, "train"), (2.0, "train"), (3.0, "valid"), (3.0, "test")]
    items = [Item(write_noise(tmp_path / f"f{i}.wav", seconds, i), BEATS[BEATS < seconds], split)
             for i, (seconds, split) in enumerate(specs)]
    return ProbeDataset("beat", "beat", items, pooling="frames", beat_neighbour_weight=1.0, beat_training="marble",
                        beat_crop_seconds=CROP, waveform_norm="file")


def assembled(task, source, crops, cache_dir=None):
    features, windows = task_features(task, source, cache_dir, crops)
    return assemble(task, features, "cpu", windows), windows


def reference_states(model, audio: np.ndarray) -> np.ndarray:
    """(S, T, C) every hidden state of the transformers model run on ``audio`` alone (no other context)."""
    with torch.no_grad():
        hidden = model(torch.from_numpy(audio)[None], output_hidden_states=True).hidden_states
    return torch.stack([h[0] for h in hidden]).numpy()


def whole_file_frames(source, path) -> np.ndarray:
    """(T, S, C) the whole file's frames, encoded once (the task's encoding: whole-file z-score)."""
    arrays, _, _ = source.extract([path], "frames", None, None, encoding=Encoding(waveform_norm="file"))
    return arrays[0].astype(np.float32)


def test_train_crops_are_the_encoder_run_on_each_crop_alone(tiny_hf, tmp_path):
    folder, model = tiny_hf
    task = beat_task(tmp_path)
    source = build_source("hf", folder, device="cpu")
    data, windows = assembled(task, source, BeatCrops("window", HOP))
    owners, starts = windows.windows
    np.testing.assert_array_equal(owners, [0] * 5 + [1] * 3)  # 3-s file: starts 0..2 s; 2-s file: 0..1 s
    np.testing.assert_allclose(starts, [0, 0.5, 1, 1.5, 2, 0, 0.5, 1])
    train = data.splits["train"]
    assert train.windows.tolist() == [0, 5, 8] and data.epoch_items == 2 and data.batch_size(64) == 2
    assert train.crop_frames == 49 and all(b - a == 49 for a, b, _ in train.files)  # a crop is one whole window
    audio = read_audio(task.items[0].path, RATE)[0]
    a, b, _ = train.files[2]  # file 0, crop starting at 1 s
    got = train.x[:, a:b].numpy()  # (S, 49, C)
    alone = reference_states(model, zscore(audio[RATE:2 * RATE]))  # the crop's audio, z-scored alone
    np.testing.assert_allclose(got, alone, atol=1e-2, rtol=1e-3)  # float16 storage
    whole = whole_file_frames(source, task.items[0].path)[50:99].transpose(1, 0, 2)  # the same 1 s, whole file
    assert np.abs(got[:, 0] - whole[:, 0]).max() > 0.1  # the crop's edge frame saw other context
    assert not np.allclose(got, whole, atol=1e-2)


def test_crop_labels_are_shifted_by_the_crop_start_and_valid_test_are_whole_files(tiny_hf, tmp_path):
    folder, _ = tiny_hf
    task = beat_task(tmp_path)
    source = build_source("hf", folder, device="cpu")
    data, windows = assembled(task, source, BeatCrops("window", HOP))
    train = data.splits["train"]
    for (a, b, reference), owner, start in zip(train.files, *windows.windows):
        beats = np.asarray(task.items[owner].label)
        whole = np.zeros(200)  # MARBLE: the whole file labelled (beat and both neighbours 1), then sliced
        for frame in np.round(beats * 50).astype(int):
            whole[max(frame - 1, 0):frame + 2] = 1
        first = int(round(start * 50))
        np.testing.assert_array_equal(train.y[a:b, 0].numpy(), whole[first:first + b - a])
        np.testing.assert_allclose(reference, beats[(beats >= start) & (beats < start + 0.98)] - start)
    a, _, _ = train.files[2]  # crop at 1 s: the beat at 0.98 s (frame 49) lies outside, its neighbour inside
    assert train.y[a, 0] == 1 and 0.98 - 1.0 not in train.files[2][2]
    for split, item in (("valid", task.items[2]), ("test", task.items[3])):
        arrays = data.splits[split]
        frames = whole_file_frames(source, item.path)
        assert arrays.windows is None and arrays.crop_frames is None
        assert [(a, b) for a, b, _ in arrays.files] == [(0, frames.shape[0])] and frames.shape[0] == 149
        np.testing.assert_array_equal(arrays.files[0][2], item.label)
        np.testing.assert_array_equal(arrays.x.numpy(), frames.transpose(1, 0, 2))
        assert int((arrays.y == 1).sum()) == len(item.label)  # MARBLE: neighbours in training only
    assert data.splits["valid"].dbn is not None


def test_a_step_draws_whole_crops_of_distinct_files(tiny_hf, tmp_path):
    folder, _ = tiny_hf
    data, _ = assembled(beat_task(tmp_path), build_source("hf", folder, device="cpu"), BeatCrops("window", HOP))
    train = data.splits["train"]
    windows = {a: k for k, (a, _, _) in enumerate(train.files)}
    seen = set()
    for step in range(12):
        index = data.sample_train(torch.tensor([3, 4]), step, 2)  # (P, 2 crops x 49 frames)
        for row in index.view(2, 2, 49):
            picked = [windows[int(crop[0])] for crop in row]  # every crop starts at a window's first frame
            assert all((crop.diff() == 1).all() for crop in row)
            assert sorted(int(np.searchsorted([0, 5, 8], k, side="right")) - 1 for k in picked) == [0, 1]
            seen.update(picked)
    assert len(seen) >= 6  # a random window of each file each step, not always the first


def test_beat_crop_encode_file_is_the_earlier_path(tiny_hf, tmp_path):
    folder, _ = tiny_hf
    task = beat_task(tmp_path)
    source = build_source("hf", folder, device="cpu")
    data, windows = assembled(task, source, BeatCrops("file", HOP))
    features, _ = task_features(task, source, None, BeatCrops("file"))
    earlier = assemble(task, features, "cpu")
    train = data.splits["train"]
    assert windows is None and train.windows is None and earlier.splits["train"].windows is None
    assert [(a, b) for a, b, _ in train.files] == [(0, 149), (149, 248)] and train.crop_frames == 50
    np.testing.assert_array_equal(train.x.numpy()[:, :149], whole_file_frames(source, task.items[0].path)
                                  .transpose(1, 0, 2))
    np.testing.assert_array_equal(train.y.numpy()[:149, 0],
                                  beat_targets(task.items[0].label, 149, 50.0, 1.0))
    keys = torch.tensor([7, 8, 9])
    for step in (0, 5):  # the draw the file path made before crops could be encoded alone
        files = rnd.sample_batches(rnd.stream_keys(keys, step, rnd.BATCH), 2, 2)
        offset = rnd.random_bits(rnd.stream_keys(keys, step, rnd.CROP), 2) % (torch.tensor([149, 99])[files] - 49)
        expected = (torch.tensor([0, 149])[files] + offset).unsqueeze(-1) + torch.arange(50)
        assert torch.equal(data.sample_train(keys, step, 2), expected.flatten(1))


def test_crop_windows_are_in_the_cache_key_and_crop_encoding_rules(tmp_path):
    task = beat_task(tmp_path)
    source = build_source("mfcc")
    paths = [item.path for item in task.items[:2]]
    keys = {cache_key(source, paths, "frames", None, None, BeatCrops("window", hop).encoding(task))
            for hop in (0.5, 0.25)} | {cache_key(source, paths, "frames", None, None, task.encoding())}
    assert len(keys) == 3
    crops = crop_encoding(Encoding(waveform_norm="file"), 10.0, 5.0)
    assert (crops.encode, crops.window, crops.hop, crops.min_window_seconds, crops.waveform_norm) == (
        "window", 10.0, 5.0, None, "window")  # MARBLE's processor z-scores each crop
    assert crop_encoding(Encoding(), 10.0, 5.0).waveform_norm == "model"
    with pytest.raises(ProbeConfigError, match="trim_silence"):
        crop_encoding(Encoding(trim_silence=True), 10.0, 5.0)
    with pytest.raises(ProbeConfigError, match="beat_crop_encode"):
        BeatCrops.split_options({"beat_crop_encode": "crop"})
    rules = get_protocol("marble").rules_for("gtzan_beat", "beat")
    options, crops = BeatCrops.split_options(rules)
    assert crops == BeatCrops("window", 5.0) and "beat_crop_encode" not in options
    for name in ("ma2023", "marble"):
        protocol = get_protocol(name)
        assert protocol.rules_for("gtzan_beat", "beat")["beat_crop_encode"] == "window"
        (row,) = [r for r in protocol.rows if r[0] == "beat training"]
        assert "encoded alone" in row[2] and "encoded alone" in row[3] and "beat_crop_encode=file" in row[3]


def test_ma2023_run_encodes_crops_alone_and_the_switch_restores_file_crops(tmp_path):
    from test_probe_train import write_demo_like_corpus

    write_demo_like_corpus(tmp_path / "corpus", n=5, seconds=16.0)  # 3 train, 1 valid, 1 test
    task = {"name": "csv", "path": str(tmp_path / "corpus" / "beat.csv"), "type": "beat"}
    cfg = {"source": {"kind": "mfcc"}, "device": "cpu", "progress": False, "cache_dir": str(tmp_path / "cache"),
           "out_dir": str(tmp_path / "out"), "tasks": [task],
           "protocol": {"name": "ma2023", "train": {"max_epochs": 1}}}
    info = run_probe(cfg)["tasks"]["beat"]
    assert (info["beat_crop_encode"], info["beat_crop_hop_seconds"], info["beat_train_windows"]) == ("window", 5.0, 6)
    # 3 files x crops at 0 and 5 s: 10 s at 22050 / 512 Hz = 431 centred STFT frames; crops of floor(10 x 43.07)
    assert info["rows"]["train"] == 6 * 431 and info["beat_crop_frames"] == 430
    old = run_probe({**cfg, "tasks": [{**task, "beat_crop_encode": "file"}], "out_dir": str(tmp_path / "out2")})
    old = old["tasks"]["beat"]
    assert (old["beat_crop_encode"], old["beat_train_windows"]) == ("file", None)
    assert old["rows"]["train"] > 3 * 16 * 43 and old["feature_cache"] == "miss"  # whole files: another entry
