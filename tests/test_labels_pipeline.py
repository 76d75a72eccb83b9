"""Label preparation end to end: ``all`` on synthetic audio, sharding, resuming, checks, CLIs."""
import dataclasses
import json
import logging
import math
import sys

import numpy as np
import pytest
import soundfile as sf

from conftest import SAMPLE_RATE, run_cli, synth_clip, write_manifest
from music_ssl.data.label_alignment import LabelAlignmentError, check_label_alignment
from music_ssl.data.label_files import LabelFileError, write_sidecar
from music_ssl.errors import LabelError
from music_ssl.labels import (CheckSettings, FeatureSettings, FitSettings, KMeansModel, LabelPrepError, LabelSettings,
                              check_stage, run_all)
from music_ssl.cli import kmeans_labels

SECONDS = {"train": [1.0, 1.3, 0.8, 1.6, 1.1], "valid": [0.9, 1.2]}


@pytest.fixture
def corpus(tmp_path):
    """train.tsv (5 clips) and valid.tsv (2 clips) of 0.8–1.6 s synthetic music in ``tmp_path/data``."""
    data, audio = tmp_path / "data", tmp_path / "audio"
    data.mkdir()
    for split, lengths in SECONDS.items():
        paths = []
        for i, seconds in enumerate(lengths):
            path = audio / split / f"clip{i}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, synth_clip(seconds, seed=100 * len(split) + i), SAMPLE_RATE)
            paths.append(path)
        write_manifest(data / f"{split}.tsv", audio, paths)
    return data


def mfcc_all(data, out, **settings):
    """``run_all`` of MFCC labels, k=8 on every frame, on the CPU; ``settings`` by flat name."""
    return run_all(data, out, LabelSettings.from_flat(**{"feature": "mfcc", "n_clusters": 8, "percent": 1.0,
                                                          "device": "cpu", **settings}))


def manifest_sizes(tsv):
    return [int(line.split("\t")[1]) for line in tsv.read_text().splitlines()[1:]]


def load_in_training_task(data, label_dir, label_rate=-1.0):
    """The MusicHuBERT task's own loading path (its label checks, then fairseq's HubertDataset); label_rate -1 (unset):
    the rate recorded beside the labels."""
    from music_ssl.tasks.music_hubert_pretraining import MusicHubertPretrainingConfig, MusicHubertPretrainingTask

    cfg = MusicHubertPretrainingConfig(data=str(data), label_dir=str(label_dir), labels=["km"],
                                       label_rate=float(label_rate))
    task = MusicHubertPretrainingTask.setup_task(cfg)
    task.load_dataset("train")
    assert task.cfg.label_rate == task.state.label_rate > 0
    return task.dataset("train")


def test_all_writes_labels_aligned_at_100_hz_that_the_training_task_loads(corpus, tmp_path):
    out = tmp_path / "km"
    reports = mfcc_all(corpus, out)
    for split in SECONDS:
        lines = (out / f"{split}.km").read_text().splitlines()
        frames = [1 + (n - 400) // 160 for n in manifest_sizes(corpus / f"{split}.tsv")]
        assert [len(line.split()) for line in lines] == frames
        check_label_alignment(str(corpus / f"{split}.tsv"), str(out / f"{split}.km"), 100, SAMPLE_RATE)
        with pytest.raises(LabelAlignmentError):
            check_label_alignment(str(corpus / f"{split}.tsv"), str(out / f"{split}.km"), 50, SAMPLE_RATE)
        assert sum(reports[split].usage) == sum(frames) and reports[split].rows == len(frames)
    assert (out / "dict.km.txt").read_text() == "".join(f"{i} 1\n" for i in range(8))
    assert KMeansModel.load(out / "kmeans.safetensors").frame_rate == 100.0
    assert json.loads((out / "report.json").read_text())["valid"]["k"] == 8
    dataset = load_in_training_task(corpus, out)  # no label_rate: the one label prep recorded (100 Hz)
    assert dataset.label_rates == [100.0]
    assert len(dataset[1]["label_list"][0]) == len((out / "train.km").read_text().splitlines()[1].split())
    assert load_in_training_task(corpus, out, 100).label_rates == [100.0]  # a stated rate that agrees
    with pytest.raises(LabelError, match=rf"{out / 'train.km.json'}: labels at 100 Hz, but task.label_rate=50; "
                                         "drop task.label_rate"):
        load_in_training_task(corpus, out, 50)


def test_sharded_run_gives_the_same_labels_as_one_shard(corpus, tmp_path, monkeypatch):
    from music_ssl.labels import apply

    mfcc_all(corpus, tmp_path / "one", nshard=1)
    monkeypatch.setattr(apply, "BLOCK_BYTES", 4 * 39 * 50)  # label ~50 frames per device call: many blocks
    mfcc_all(corpus, tmp_path / "three", nshard=3)
    for name in ("train.km", "valid.km", "dict.km.txt"):
        assert (tmp_path / "one" / name).read_text() == (tmp_path / "three" / name).read_text()
    np.testing.assert_array_equal(KMeansModel.load(tmp_path / "one" / "kmeans.safetensors").centroids,
                                  KMeansModel.load(tmp_path / "three" / "kmeans.safetensors").centroids)
    assert len(list((tmp_path / "three" / "feat").glob("train_*_3.npy"))) == 3


def test_rerun_skips_complete_shards_and_redoes_partial_ones(corpus, tmp_path):
    out = tmp_path / "km"
    mfcc_all(corpus, out, nshard=2)
    labels_before = (out / "train.km").read_text()
    complete, partial = out / "feat" / "train_0_2.npy", out / "feat" / "train_1_2.npy"
    stamp = complete.stat().st_mtime_ns
    (out / "feat" / "train_1_2.npy.done").unlink()  # as if interrupted after the rename, before the marker
    partial.write_bytes(partial.read_bytes()[:200])
    (out / "shards" / "valid_0_2.km").write_text("0 0\n")  # a stale label shard without its marker
    (out / "shards" / "valid_0_2.km.done").unlink()
    mfcc_all(corpus, out, nshard=2)
    assert complete.stat().st_mtime_ns == stamp
    assert np.load(partial).shape[0] == sum(int(n) for n in (out / "feat" / "train_1_2.len").read_text().split())
    assert (out / "train.km").read_text() == labels_before
    check_label_alignment(str(corpus / "valid.tsv"), str(out / "valid.km"), 100, SAMPLE_RATE)


def test_more_clusters_than_frames_is_a_clear_error(corpus, tmp_path):
    with pytest.raises(LabelPrepError, match=r"train has only \d+ frames for k=5000 clusters; lower n_clusters"):
        mfcc_all(corpus, tmp_path / "km", n_clusters=5000)


@pytest.mark.parametrize("make, message", [
    (lambda: FitSettings(percent=2), r"percent=2: must be in \(0, 1\]"),
    (lambda: FitSettings(percent=0.0), r"percent=0.0: must be in \(0, 1\]"),
    (lambda: FitSettings(n_clusters=0), "n_clusters=0: must be at least 1"),
    (lambda: FitSettings(n_clusters=8, max_frames=4), "max_frames=4: must be at least n_clusters=8"),
    (lambda: FitSettings(max_sample_gb=0), "max_sample_gb=0: must be positive"),
    (lambda: FitSettings(backend="faiss"), "backend='faiss': unknown; choose one of torch, sklearn"),
    (lambda: FitSettings(max_iter=0), "max_iter=0: must be at least 1"),
    (lambda: FitSettings(sample_unit="rows"), "sample_unit='rows': unknown; choose one of frames, utterances"),
    (lambda: FeatureSettings(feature="chroma"), "feature='chroma': unknown; choose one of mfcc, layer"),
    (lambda: FeatureSettings(feature="layer", layer=3), "feature='layer' needs checkpoint .*got checkpoint=None"),
    (lambda: FeatureSettings(n_mfcc=0), "n_mfcc=0: must be at least 1"),
    (lambda: FeatureSettings(layer=-1), "layer=-1: must be 0"),
    (lambda: CheckSettings(tolerance=-0.1), "tolerance=-0.1: must be 0 or more"),
    (lambda: LabelSettings(splits=()), r"splits=\[\]: must name at least one split"),
    (lambda: LabelSettings(splits=("train", "train")), "splits=.*each once"),
    (lambda: LabelSettings(nshard=0), "nshard=0: must be at least 1"),
    (lambda: LabelSettings.from_flat(percent=2), r"percent=2: must be in \(0, 1\]"),
])
def test_settings_reject_bad_values_with_a_line_naming_the_setting(make, message):
    with pytest.raises(LabelPrepError, match=f"^{message}") as info:
        make()
    assert "--" not in str(info.value) and "\n" not in str(info.value)  # the setting, never a CLI flag


def test_settings_are_the_cli_defaults_and_flat_names_reach_their_part(tmp_path):
    args = vars(kmeans_labels.parser().parse_args(["all", "tsv", "out", "--n-clusters", "8"]))
    assert (args.pop("command"), args.pop("tsv_dir"), args.pop("out_dir")) == ("all", "tsv", "out")
    assert LabelSettings.from_flat(**args) == LabelSettings(fit=FitSettings(n_clusters=8))  # defaults stated once
    settings = LabelSettings.from_flat(feature="layer", checkpoint="m.pt", layer=2, percent=1.0, tolerance=0.2,
                                       splits=["a", "b"], device="cpu")
    assert (settings.features.layer, settings.fit.percent, settings.check.tolerance) == (2, 1.0, 0.2)
    assert settings.splits == ("a", "b") and settings.device == "cpu"
    with pytest.raises(TypeError):
        LabelSettings.from_flat(n_cluster=8)  # a typo is not silently dropped
    for part in (FeatureSettings, FitSettings, CheckSettings, LabelSettings):
        assert all(f.metadata.get("help") for f in dataclasses.fields(part))


def test_cli_bad_setting_prints_one_line_naming_the_setting_before_any_work(corpus, tmp_path, monkeypatch, capsys):
    from test_bad_input_labels import cli_error

    out = tmp_path / "km"
    line = cli_error(monkeypatch, capsys, kmeans_labels.cli, "music-ssl-kmeans", "all", corpus, out,
                     "--n-clusters", "4", "--percent", "2", "--device", "cpu")
    assert line == "error: percent=2.0: must be in (0, 1] (the fraction of frames or utterances to fit on; 1 = all)."
    line = cli_error(monkeypatch, capsys, kmeans_labels.cli, "music-ssl-kmeans", "fit", out / "feat", "train", 1,
                     out / "km.safetensors", "--n-clusters", "8", "--max-frames", "4")
    assert line.startswith("error: max_frames=4: must be at least n_clusters=8")
    assert not out.exists()


# --- the k-means sample: frames or whole utterances ------------------------------------------------------------


def write_row_shards(feat_dir, lengths, nshard):
    """Feature shards of a split whose rows hold ``lengths`` frames, split into ``nshard`` shards as the features
    stage does; every frame is (its row, its position in the row, its global frame index) so a sample can be traced."""
    from music_ssl.data.manifest import shard_range
    from music_ssl.labels.features import feature_paths
    from music_ssl.labels.shards import mark_done

    lengths = np.asarray(lengths, dtype=np.int64)
    rows = np.repeat(np.arange(len(lengths)), lengths)  # (F,) row of every frame
    position = np.arange(len(rows)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    frames = np.stack([rows, position, np.arange(len(rows))], axis=1).astype(np.float32)  # (F, 3)
    feat_dir.mkdir(parents=True, exist_ok=True)
    for rank in range(nshard):
        start, end = shard_range(len(lengths), nshard, rank)
        npy, lengths_path = feature_paths(feat_dir, "train", nshard, rank)
        np.save(npy, frames[(rows >= start) & (rows < end)])
        lengths_path.write_text("".join(f"{n}\n" for n in lengths[start:end]))
        mark_done(npy, f"rows {start}-{end}", features={"feature": "synthetic"}, frame_rate=50.0, rows=end - start)
    return lengths


def draw(feat_dir, nshard=1, unit="utterances", percent=0.25, max_frames=None, min_frames=0, seed=0):
    from music_ssl.labels.sampling import sample_frames

    return sample_frames(feat_dir, "train", nshard, percent, max_frames, min_frames, seed, unit).frames


def row_counts(sample, n_rows):
    """Frames of every row in a traced sample (n_rows,)."""
    return np.bincount(sample[:, 0].astype(np.int64), minlength=n_rows)


@pytest.fixture
def row_shards(tmp_path):
    """200 rows of 5–60 frames in 3 shards (and the same rows in 1 shard): (folder of 3, folder of 1, lengths)."""
    lengths = np.random.default_rng(7).integers(5, 61, 200)
    write_row_shards(tmp_path / "three", lengths, 3)
    write_row_shards(tmp_path / "one", lengths, 1)
    return tmp_path / "three", tmp_path / "one", lengths


def test_utterance_sampling_takes_whole_rows_at_percent_of_the_rows(row_shards):
    three, _, lengths = row_shards
    sample = draw(three, nshard=3, unit="utterances", percent=0.25)
    counts = row_counts(sample, len(lengths))
    chosen = np.flatnonzero(counts)
    assert len(chosen) == math.ceil(0.25 * len(lengths))  # the fraction of rows is percent
    np.testing.assert_array_equal(counts[chosen], lengths[chosen])  # every sampled row is there whole
    assert (np.diff(sample[:, 2]) > 0).all()  # each frame once, in the split's order
    assert chosen.min() < 67 and chosen.max() >= 134  # rows of the first and the last shard (of 3)
    frames = draw(three, nshard=3, unit="frames", percent=0.25)  # the default unit: frames one by one
    counts = row_counts(frames, len(lengths))
    assert len(frames) == math.ceil(0.25 * lengths.sum()) and (counts[counts > 0] < lengths[counts > 0]).any()


def test_utterance_sampling_is_seeded_and_independent_of_nshard(row_shards):
    three, one, _ = row_shards
    first = draw(three, nshard=3, seed=3)
    np.testing.assert_array_equal(first, draw(three, nshard=3, seed=3))
    np.testing.assert_array_equal(first, draw(one, nshard=1, seed=3))  # the same rows whatever nshard
    other = draw(three, nshard=3, seed=4)
    assert len(first) != len(other) or not np.array_equal(first, other)


def test_utterance_sampling_keeps_the_frame_floor_and_the_cap_with_whole_rows(row_shards):
    three, _, lengths = row_shards
    few = row_counts(draw(three, nshard=3, percent=0.01), len(lengths))  # 2 rows: under 300 frames
    floored = row_counts(draw(three, nshard=3, percent=0.01, min_frames=2000), len(lengths))
    capped = row_counts(draw(three, nshard=3, percent=1.0, max_frames=1000), len(lengths))
    assert (few > 0).sum() == 2 and floored.sum() >= 2000 and 0 < capped.sum() <= 1000
    for counts in (floored, capped):
        np.testing.assert_array_equal(counts[counts > 0], lengths[counts > 0])
    assert ((few > 0) <= (floored > 0)).all()  # the floor adds rows to those percent drew
    with pytest.raises(LabelPrepError, match=r"^max_frames / max_sample_gb: the sample cap of 4 frames is smaller"):
        draw(three, nshard=3, max_frames=4)


def test_fit_records_the_sample_unit_and_refits_when_it_changes(row_shards, tmp_path):
    from music_ssl.labels import fit_stage

    three, _, lengths = row_shards
    km = tmp_path / "km.safetensors"
    fitted = fit_stage(three, "train", 3, km, FitSettings(n_clusters=4, percent=0.5, sample_unit="utterances"), "cpu")
    assert (fitted.metadata["sample_unit"], fitted.metadata["sample_percent"]) == ("utterances", "0.5")
    whole_rows = draw(three, nshard=3, percent=0.5, min_frames=256 * 4)  # the same draw: seed 0, the floor of k=4
    assert int(fitted.metadata["sample_frames"]) == len(whole_rows) != math.ceil(0.5 * lengths.sum())
    frames = fit_stage(three, "train", 3, km, FitSettings(n_clusters=4, percent=0.5), "cpu")
    assert KMeansModel.load(km).metadata["sample_unit"] == frames.metadata["sample_unit"] == "frames"


def write_labelled_split(folder, relpaths, label_lines, k):
    """Manifest rows sized to their label lines at 100 Hz, the .km file and dict.km.txt."""
    folder.mkdir(exist_ok=True)
    sizes = [160 * len(line) + 240 for line in label_lines]
    (folder / "train.tsv").write_text("/audio\n" + "".join(f"{r}\t{n}\n" for r, n in zip(relpaths, sizes)))
    (folder / "train.km").write_text("".join(" ".join(map(str, line)) + "\n" for line in label_lines))
    (folder / "dict.km.txt").write_text("".join(f"{i} 1\n" for i in range(k)))


def test_check_reports_usage_entropy_dead_clusters_purity_and_pnmi(tmp_path):
    lines = [[0, 0, 1, 1, 1], [0, 1], [2, 2, 2, 0], [2, 2]]  # rows 0-1 class "a", rows 2-3 class "b"
    relpaths = ["x/song_0000.flac", "x/song_0001.flac", "y/other.flac", "z/unknown.flac"]
    write_labelled_split(tmp_path, relpaths, lines, k=4)
    (tmp_path / "ref.csv").write_text("path,genre\nx/song.mp3,a\ny/other.wav,b\n")
    report = check_stage(tmp_path, tmp_path, "train", 100, reference=tmp_path / "ref.csv", reference_column="genre")
    usage = np.bincount(np.concatenate(lines), minlength=4)
    p = usage / usage.sum()
    assert report.usage == usage.tolist() and report.dead_clusters == 1
    assert report.entropy_bits == pytest.approx(-(p[p > 0] * np.log2(p[p > 0])).sum())
    assert (report.labelled_rows, report.unlabelled_rows, report.classes) == (3, 1, ["a", "b"])
    # labelled frames: class a → clusters 0,0,1,1,1,0,1 ; class b → 2,2,2,0
    joint = np.array([[3, 1], [4, 0], [0, 3]])  # (cluster, class)
    assert report.purity == pytest.approx(joint.max(1).sum() / joint.sum())
    pxy = joint / joint.sum()
    px, py = pxy.sum(1), pxy.sum(0)
    mutual = sum(pxy[i, j] * math.log(pxy[i, j] / (px[i] * py[j])) for i in range(3) for j in range(2) if pxy[i, j])
    assert report.pnmi == pytest.approx(mutual / -(py * np.log(py)).sum())


def test_check_rejects_misaligned_lines_and_unknown_labels(tmp_path):
    write_labelled_split(tmp_path, ["a.flac", "b.flac"], [[0] * 50, [1] * 30], k=2)
    (tmp_path / "train.km").write_text("0 " * 50 + "\n" + "1 " * 5 + "\n")  # second line 0.25 s short
    with pytest.raises(LabelAlignmentError, match="1 of 2 lines do not match their manifest row: line 2 has 5 labels, "
                                                  "expected 32±10 for 0.32 s at 100 Hz"):
        check_stage(tmp_path, tmp_path, "train", 100)
    (tmp_path / "train.km").write_text("0 " * 50 + "\n" + "7 " * 30 + "\n")
    with pytest.raises(LabelFileError, match=r"train.km: line 2 has label '7', not an id 0..1 of the dictionary"):
        check_stage(tmp_path, tmp_path, "train", 100)
    (tmp_path / "train.km").write_text("0 " * 50 + "\n" + "1 " * 30 + "\n")
    with pytest.raises(LabelFileError, match=r"no label rate recorded beside it \(train.km.json"):
        check_stage(tmp_path, tmp_path, "train")  # labels of another tool: the rate must be stated
    write_sidecar(tmp_path / "train.km", {"k": 2, "label_rate": 100.0})
    assert check_stage(tmp_path, tmp_path, "train").frames == 80  # the recorded rate is used


def test_cli_bad_input_prints_one_error_line_naming_the_file(corpus, tmp_path, monkeypatch, capsys):
    stereo = tmp_path / "audio" / "train" / "clip1.wav"
    sf.write(stereo, np.stack([synth_clip(1.3, 0)] * 2, 1), SAMPLE_RATE)  # same length, now two channels
    monkeypatch.setattr(sys, "argv", ["music-ssl-kmeans", "all", str(corpus), str(tmp_path / "km"),
                                      "--n-clusters", "4", "--device", "cpu"])
    handlers, level = logging.root.handlers[:], logging.root.level  # the CLI points logging at this test's stderr
    try:
        with pytest.raises(SystemExit) as exit_info:
            kmeans_labels.cli()
    finally:
        logging.root.handlers[:], logging.root.level = handlers, level
    err = capsys.readouterr().err  # log lines, then the error
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert exit_info.value.code == 1 and len(errors) == 1 and "Traceback" not in err
    assert errors[0].startswith(f"error: {stereo}: has 2 channels") and "--convert-dir" in errors[0]


@pytest.mark.slow
def test_console_scripts_manifest_then_sharded_sklearn_labels(tmp_path):
    audio = tmp_path / "audio"
    audio.mkdir()
    for i in range(6):
        sf.write(audio / f"t{i}.flac", synth_clip(1.0 + 0.2 * i, seed=i), SAMPLE_RATE)
    run_cli(["music-ssl-manifest", audio, "--dest", tmp_path / "m", "--valid-percent", "0.3", "--seed", "1"], tmp_path)
    run_cli(["music-ssl-kmeans", "all", tmp_path / "m", tmp_path / "km", "--feature", "mfcc", "--n-mfcc", "20",
             "--n-clusters", "6", "--nshard", "2", "--backend", "sklearn", "--seed", "1", "--device", "cpu"], tmp_path)
    reports = kmeans_labels.main("check", tsv_dir=tmp_path / "m", lab_dir=tmp_path / "km")  # rate from the model
    assert (reports["train"].rows, reports["valid"].rows) == (4, 2)
    model = KMeansModel.load(tmp_path / "km" / "kmeans.safetensors")
    assert (model.dim, model.metadata["backend"], model.features["n_mfcc"]) == (60, "sklearn", 20)


@pytest.mark.slow
def test_layer_labels_of_a_checkpoint_align_at_50_hz(session_corpus, tiny_checkpoints, tmp_path):
    out = tmp_path / "km"
    features = FeatureSettings(feature="layer", checkpoint=tiny_checkpoints["music_hubert"], layer=3)
    run_all(session_corpus, out, LabelSettings(features, FitSettings(n_clusters=4, percent=1.0), device="cpu"))
    for split in ("train", "valid"):
        check_label_alignment(str(session_corpus / f"{split}.tsv"), str(out / f"{split}.km"), 50, SAMPLE_RATE)
        frames = [(n - 400) // 320 + 1 for n in manifest_sizes(session_corpus / f"{split}.tsv")]
        assert [len(line.split()) for line in (out / f"{split}.km").read_text().splitlines()] == frames
    assert KMeansModel.load(out / "kmeans.safetensors").features["layer"] == 3
    assert len(load_in_training_task(session_corpus, out)) == 8  # 50 Hz, as recorded
