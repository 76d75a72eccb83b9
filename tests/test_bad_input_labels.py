"""Bad input to the label tools and the Python entry points: one clear error naming the file (and line), or a
documented repair; interrupted shards redone; temporaries of killed runs removed. ``pytest -k bad`` runs them."""
import importlib
import inspect
import json
import logging
import pkgutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import soundfile as sf
import torch

import music_ssl
from conftest import SAMPLE_RATE, synth_clip, write_manifest
from music_ssl.cli import kmeans_labels
from music_ssl.core.atomic import atomic_path, remove_stale_temporaries, temporary_path
from music_ssl.data.label_alignment import LabelAlignmentError, check_label_alignment
from music_ssl.data.label_files import LabelFileError, check_label_vocabulary, label_counts, label_lines
from music_ssl.errors import CheckpointError, ExportError, LabelError, MusicSSLError, one_line
from music_ssl.labels import (FeatureSettings, FitSettings, LabelPrepError, LabelSettings, apply_stage, dump_features,
                              fit_stage, make_extractor, merge_stage)
from music_ssl.labels import features as features_module
from music_ssl.labels.sampling import FRAMES_PER_CLUSTER, default_sample_size

K = 8


@pytest.fixture
def corpus(tmp_path):
    """train.tsv of 4 synthetic clips (0.6–1.2 s) in ``tmp_path/data``."""
    data, audio = tmp_path / "data", tmp_path / "audio"
    data.mkdir()
    paths = []
    for i, seconds in enumerate([0.6, 1.2, 0.9, 1.0]):
        path = audio / f"clip{i}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, synth_clip(seconds, seed=i), SAMPLE_RATE)
        paths.append(path)
    write_manifest(data / "train.tsv", audio, paths)
    write_manifest(data / "valid.tsv", audio, paths[:2])
    return data


def write_split(folder, seconds, label_counts, k=K, seed=0):
    """train.tsv rows of ``seconds`` and train.km lines with ``label_counts`` random ids < k."""
    rng = np.random.default_rng(seed)
    folder.mkdir(exist_ok=True)
    (folder / "train.tsv").write_text("/audio\n" + "".join(f"c{i}.flac\t{int(s * SAMPLE_RATE)}\n"
                                                           for i, s in enumerate(seconds)))
    (folder / "train.km").write_text("".join(" ".join(map(str, rng.integers(0, k, n))) + "\n" for n in label_counts))
    (folder / "dict.km.txt").write_text("".join(f"{i} 1\n" for i in range(k)))
    return folder / "train.tsv", folder / "train.km"


def run_cli(monkeypatch, capsys, main, *argv) -> tuple:
    """(exit code, stderr) of a console script's ``main`` run in-process with ``sys.argv = argv``."""
    monkeypatch.setattr(sys, "argv", list(map(str, argv)))
    handlers, level = logging.root.handlers[:], logging.root.level  # the CLI points logging at this test's stderr
    try:
        with pytest.raises(SystemExit) as exit_info:
            main()
    finally:
        logging.root.handlers[:], logging.root.level = handlers, level
    return exit_info.value.code, capsys.readouterr().err


def cli_error(monkeypatch, capsys, main, *argv) -> str:
    """The one ``error:`` line of a console script run in-process; asserts exit 1 and no traceback."""
    code, err = run_cli(monkeypatch, capsys, main, *argv)
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert code == 1 and len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


# --- label files: vocabulary on every line, bad lines named ---------------------------------------------------


@pytest.mark.parametrize("token", ["8", "08", "-1", "x", "1.0", "99999999999999999999"])
def test_bad_label_far_past_line_200_is_named_by_line(tmp_path, token):
    tsv, km = write_split(tmp_path, [1.0] * 600, [100] * 600)
    lines = km.read_text().splitlines()
    lines[499] = lines[499].rsplit(" ", 1)[0] + f" {token}"
    km.write_text("\n".join(lines) + "\n")
    with pytest.raises(LabelFileError, match=rf"train.km: line 500 has label '{token}', not an id 0..7"):
        check_label_vocabulary(str(km), [str(i) for i in range(K)])
    with pytest.raises(LabelFileError, match=rf"train.km: line 500 has label '{token}'"):  # the one reader
        list(label_lines(km, K))


def test_bad_label_binary_bytes_and_non_numeric_dictionary(tmp_path):
    tsv, km = write_split(tmp_path, [1.0] * 3, [100] * 3)
    km.write_bytes(km.read_bytes() + b"1 2\x00 3\n")
    with pytest.raises(LabelFileError, match="line 4 holds byte 0x00: not a text label file"):
        check_label_vocabulary(str(km), [str(i) for i in range(K)])
    km.write_text("a b\nb c\n")  # any other dictionary: checked line by line, every line
    with pytest.raises(LabelFileError, match=r"line 2 has labels \['c'\]"):
        check_label_vocabulary(str(km), ["a", "b"])


@pytest.mark.parametrize("block_bytes", [4, 7, 1 << 22])  # blocks smaller than a line, odd, one block
def test_label_file_streamed_in_blocks_equals_a_plain_split(tmp_path, monkeypatch, block_bytes):
    from music_ssl.data import label_files

    km = tmp_path / "x.km"
    km.write_text("1 2 3\n\n10 0\n 4  5 \r\n7\t7")  # empty line, CRLF, tab, no final newline
    plain = [[int(t) for t in line.split()] for line in km.read_text().split("\n")]
    monkeypatch.setattr(label_files, "BLOCK_BYTES", block_bytes)
    assert label_counts(km).tolist() == [len(line) for line in plain]
    assert label_counts(km, k=11).tolist() == [len(line) for line in plain]
    assert [line.tolist() for line in label_lines(km, 11)] == plain


def test_bad_label_line_lengths_are_named_instead_of_guessing_a_rate(tmp_path):
    seconds = [5.0] * 40
    counts = [500] * 40
    counts[16], counts[30] = 301, 480  # two damaged lines among 40 good ones at 100 Hz
    tsv, km = write_split(tmp_path, seconds, counts)
    with pytest.raises(LabelAlignmentError) as err:
        check_label_alignment(str(tsv), str(km), 100, SAMPLE_RATE)
    message = str(err.value)
    assert "2 of 40 lines do not match" in message and "label_rate" not in message
    assert "line 17 has 301 labels, expected 500±10 for 5.00 s at 100 Hz" in message
    assert "line 31 has 480 labels" in message


def test_bad_label_rate_is_suggested_only_when_most_lines_agree(tmp_path):
    tsv, km = write_split(tmp_path, [1.0, 2.0, 3.0, 1.5], [100, 200, 300, 150])  # labels at 100 Hz
    with pytest.raises(LabelAlignmentError, match=r"4 of 4 lines .* align at 100 Hz: set task.label_rate=100"):
        check_label_alignment(str(tsv), str(km), 50, SAMPLE_RATE)
    tsv, km = write_split(tmp_path, [1.0, 2.0, 3.0, 1.5], [100, 37, 300, 20])  # no rate agrees with most lines
    with pytest.raises(LabelAlignmentError, match=r"2 of 4 lines do not match .* line 2 has 37 labels"):
        check_label_alignment(str(tsv), str(km), 100, SAMPLE_RATE)


def test_bad_label_file_missing_or_line_count(tmp_path):
    tsv, km = write_split(tmp_path, [1.0, 1.0], [100, 100])
    with pytest.raises(LabelError, match="nope.km: label file not found") as err:
        check_label_alignment(str(tsv), str(tmp_path / "nope.km"), 100, SAMPLE_RATE)
    assert isinstance(err.value, FileNotFoundError)
    km.write_text("1 2\n")
    with pytest.raises(LabelAlignmentError, match="1 label lines for 2 rows"):
        check_label_alignment(str(tsv), str(km), 100, SAMPLE_RATE)


def test_bad_label_file_with_a_trailing_blank_line_is_named_so(tmp_path, monkeypatch, capsys):
    tsv, km = write_split(tmp_path, [1.0, 1.0], [100, 100])
    km.write_text(km.read_text() + "\n")  # an editor's extra newline: a blank third line
    line = cli_error(monkeypatch, capsys, kmeans_labels.cli, "music-ssl-kmeans", "check", tmp_path, tmp_path,
                     "--splits", "train", "--label-rate", "100")
    assert line == (f"error: {km}: ends with 1 blank line(s) after its 2 label lines (one per row of {tsv}); "
                    f"delete the trailing blank line(s).")
    km.write_text(km.read_text().rstrip("\n") + "\n3 3\n")  # a third line that holds labels: not a blank line
    with pytest.raises(LabelAlignmentError, match="3 label lines for 2 rows"):
        check_label_alignment(str(tsv), str(km), 100, SAMPLE_RATE)


def test_bad_labels_check_cli_prints_one_line(tmp_path, monkeypatch, capsys):
    tsv, km = write_split(tmp_path, [1.0] * 300, [100] * 300)
    lines = km.read_text().splitlines()
    lines[249] = "3 " * 40
    km.write_text("\n".join(lines) + "\n")
    line = cli_error(monkeypatch, capsys, kmeans_labels.cli, "music-ssl-kmeans", "check", tmp_path, tmp_path,
                     "--splits", "train", "--label-rate", "100")
    assert line.startswith(f"error: {km}: 1 of 300 lines") and "line 250 has 40 labels" in line


# --- label shards: provenance, interrupted shards, temporaries --------------------------------------------------


def mfcc_features(data, feat_dir, nshard=2, n_mfcc=13):
    extractor = make_extractor(FeatureSettings(n_mfcc=n_mfcc))
    for rank in range(nshard):
        dump_features(data, "train", nshard, rank, feat_dir, extractor)


def test_bad_merge_of_shards_from_two_kmeans_models(corpus, tmp_path, monkeypatch, capsys):
    feat = tmp_path / "feat"
    mfcc_features(corpus, feat)
    fit_stage(feat, "train", 2, tmp_path / "a.safetensors", FitSettings(n_clusters=4, percent=1.0, seed=0), "cpu")
    fit_stage(feat, "train", 2, tmp_path / "b.safetensors", FitSettings(n_clusters=4, percent=1.0, seed=1), "cpu")
    apply_stage(feat, "train", tmp_path / "a.safetensors", 2, 0, tmp_path / "lab", "cpu")
    apply_stage(feat, "train", tmp_path / "b.safetensors", 2, 1, tmp_path / "lab", "cpu")
    shard1 = tmp_path / "lab" / "train_1_2.km"
    with pytest.raises(LabelPrepError, match=rf"{shard1}: made with a different model key than .*train_0_2.km"):
        merge_stage(tmp_path / "lab", "train", 2)
    line = cli_error(monkeypatch, capsys, kmeans_labels.cli, "music-ssl-kmeans", "merge", tmp_path / "lab", "train", 2)
    assert line.startswith(f"error: {shard1}: made with a different model key")
    assert not (tmp_path / "lab" / "train.km").exists()
    apply_stage(feat, "train", tmp_path / "a.safetensors", 2, 1, tmp_path / "lab", "cpu")
    merged = merge_stage(tmp_path / "lab", "train", 2)
    sidecar = json.loads((tmp_path / "lab" / "train.km.json").read_text())
    assert merged.is_file() and sidecar["k"] == 4 and sidecar["label_rate"] == 100.0
    assert sidecar["feature_settings"] == {"feature": "mfcc", "n_mfcc": 13, "sample_rate": SAMPLE_RATE}


def test_bad_check_of_splits_labelled_by_two_models(corpus, tmp_path, monkeypatch, capsys):
    from music_ssl.labels import run_all

    run_all(corpus, tmp_path / "km", LabelSettings.from_flat(n_clusters=4, percent=1.0, device="cpu"))
    sidecar = tmp_path / "km" / "valid.km.json"
    sidecar.write_text(sidecar.read_text().replace('"model_key": "', '"model_key": "0'))
    line = cli_error(monkeypatch, capsys, kmeans_labels.cli, "music-ssl-kmeans", "check", corpus, tmp_path / "km")
    assert line.startswith(f"error: {sidecar}: made with a different model key than {tmp_path / 'km' / 'train.km.json'}")


def test_bad_check_of_labels_against_another_dictionary_or_rate(corpus, tmp_path, monkeypatch, capsys):
    from music_ssl.labels import run_all

    out = tmp_path / "km"
    run_all(corpus, out, LabelSettings.from_flat(n_clusters=4, percent=1.0, device="cpu"))
    line = cli_error(monkeypatch, capsys, kmeans_labels.cli, "music-ssl-kmeans", "check", corpus, out,
                     "--label-rate", 50)
    assert line.startswith(f"error: {out / 'train.km'}: labels at 100 Hz (train.km.json), read at 50 Hz; "
                           f"leave label_rate unset")
    (out / "dict.km.txt").write_text("".join(f"{i} 1\n" for i in range(6)))
    line = cli_error(monkeypatch, capsys, kmeans_labels.cli, "music-ssl-kmeans", "check", corpus, out)
    assert line.startswith(f"error: {out / 'train.km'}: made by a k=4 model (train.km.json) but the "
                           f"dictionary (dict.km.txt) has 6 ids")


def test_bad_apply_of_a_model_to_features_of_other_settings(corpus, tmp_path):
    from test_export_hf import stock_data2vec  # a tiny in-process fairseq checkpoint

    ckpt = stock_data2vec(tmp_path)
    for layer in (1, 2):
        extractor = make_extractor(FeatureSettings(feature="layer", checkpoint=ckpt, layer=layer), "cpu")
        dump_features(corpus, "train", 1, 0, tmp_path / f"layer{layer}", extractor)
    fit_stage(tmp_path / "layer1", "train", 1, tmp_path / "km.safetensors", FitSettings(n_clusters=4, percent=1.0),
              "cpu")
    with pytest.raises(LabelPrepError, match=r"km.safetensors: fitted on features .*'layer': 1.* but .*layer2 holds "
                                              r"features .*'layer': 2"):
        apply_stage(tmp_path / "layer2", "train", tmp_path / "km.safetensors", 1, 0, tmp_path / "lab", "cpu")
    mfcc_features(corpus, tmp_path / "mfcc", nshard=1)
    with pytest.raises(LabelPrepError, match="centroids are 64-d but .*mfcc holds 39-d features"):
        apply_stage(tmp_path / "mfcc", "train", tmp_path / "km.safetensors", 1, 0, tmp_path / "lab", "cpu")


def test_bad_interrupted_rewrite_never_leaves_the_old_marker_vouching(corpus, tmp_path, monkeypatch):
    """A shard rewritten with other settings and killed before its marker must be redone, not taken as done."""
    feat = tmp_path / "feat"
    mfcc_features(corpus, feat, nshard=1)
    npy = feat / "train_0_1.npy"
    reference = np.load(npy)
    real_fill = features_module.fill_features

    def killed_after_the_rename(tmp, *args, **kwargs):  # the new file is complete, the process dies before marking
        real_fill(tmp, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(features_module, "fill_features", killed_after_the_rename)
    with pytest.raises(KeyboardInterrupt):
        mfcc_features(corpus, feat, nshard=1, n_mfcc=20)  # other settings, same shard path
    assert not (feat / "train_0_1.npy.done").exists()
    monkeypatch.setattr(features_module, "fill_features", real_fill)
    mfcc_features(corpus, feat, nshard=1)  # the original settings: redone, not skipped
    np.testing.assert_array_equal(np.load(npy), reference)


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_bad_leftover_temporaries_of_killed_runs_are_removed(corpus, tmp_path):
    feat = tmp_path / "feat"
    feat.mkdir()
    dead = feat / f".train_0_1.tmp-{dead_pid()}.npy"
    dead.write_bytes(b"half a shard")
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as alive_proc:
        alive = feat / f".train_0_1.tmp-{alive_proc.pid}.npy"
        alive.write_bytes(b"being written")
        other = feat / f".train_1_2.tmp-{dead_pid()}.npy"  # another target: not ours to touch
        other.write_bytes(b"x")
        mfcc_features(corpus, feat, nshard=1)
        alive_proc.kill()
    assert not dead.exists() and alive.exists() and other.exists()
    assert remove_stale_temporaries(feat / "train_1_2.npy") == [other] and not other.exists()


def test_bad_folder_targets_and_odd_names_in_temporary_cleanup(tmp_path):
    target = tmp_path / "we[ir]d.name.km"
    stale = temporary_path(target).with_name(f".we[ir]d.name.tmp-{dead_pid()}.km")
    stale.write_text("x")
    with atomic_path(target) as tmp:
        tmp.write_text("done\n")
    assert target.read_text() == "done\n" and not stale.exists()
    folder = tmp_path / f".export.tmp-{dead_pid()}"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"x")
    assert remove_stale_temporaries(tmp_path / "export") == [folder] and not folder.exists()


# --- NaN/Inf: refused at the feature dump, the fit and apply, never labelled 0 (#20) ---------------------------


def add_row(corpus, name: str, audio: np.ndarray, subtype: str = "FLOAT"):
    """Append a row for a new float WAV ``name`` to train.tsv of ``corpus``; returns the file."""
    path = corpus.parent / "audio" / name
    sf.write(path, audio, SAMPLE_RATE, subtype=subtype)
    tsv = corpus / "train.tsv"
    tsv.write_text(tsv.read_text() + f"{name}\t{len(audio)}\n")
    return path


def kmeans_all(monkeypatch, capsys, corpus, out) -> str:
    return cli_error(monkeypatch, capsys, kmeans_labels.cli, "music-ssl-kmeans", "all", corpus, out,
                     "--n-clusters", 4, "--percent", 1.0, "--device", "cpu")


def test_bad_nan_samples_stop_kmeans_all_naming_the_file(corpus, tmp_path, monkeypatch, capsys):
    """Before: 'inertia nan', exit 0, every frame of every file labelled 0."""
    audio = synth_clip(1.0, seed=7)
    audio[8000:8100] = np.nan
    nan = add_row(corpus, "nan.wav", audio)
    line = kmeans_all(monkeypatch, capsys, corpus, tmp_path / "km")
    assert line.startswith(f"error: {nan}: holds 100 non-finite samples (NaN/Inf), the first at sample 8000 "
                           f"(0.500 s); repair or replace the file, or leave its row out: `music-ssl-manifest audit")
    assert not (tmp_path / "km" / "train.km").exists() and not (tmp_path / "km" / "kmeans.safetensors").exists()


def test_bad_features_that_overflow_stop_kmeans_all_naming_the_row(corpus, tmp_path, monkeypatch, capsys):
    """Finite float samples of 1e20 give Inf/NaN MFCCs: refused at the dump, naming manifest line and file."""
    huge = add_row(corpus, "huge.wav", synth_clip(1.0, seed=8) * 1e20)
    line = kmeans_all(monkeypatch, capsys, corpus, tmp_path / "km")
    assert line.startswith(f"error: {corpus / 'train.tsv'}:6: {huge}: ") and "feature frames hold NaN/Inf" in line
    assert not (tmp_path / "km" / "train.km").exists()


def test_bad_nan_or_huge_features_in_a_shard_are_refused_by_fit_and_apply(corpus, tmp_path, monkeypatch, capsys):
    """Shards written before NaN/Inf were refused: fit refuses NaN frames and a non-finite inertia, apply refuses
    NaN rows, instead of saving a NaN model or labelling every frame 0."""
    from music_ssl.labels import run_all

    out = tmp_path / "km"
    run_all(corpus, out, LabelSettings.from_flat(n_clusters=4, percent=1.0, device="cpu"))
    shard = np.load(out / "feat" / "train_0_1.npy", mmap_mode="r+")  # (frames, 39)
    clean = np.array(shard)
    fit = ("music-ssl-kmeans", "fit", out / "feat", "train", 1, tmp_path / "refit.safetensors", "--n-clusters", 4,
           "--percent", 1.0, "--device", "cpu")
    shard[150, 3] = np.nan  # row 1 (clip1) starts at frame 58
    shard.flush()
    line = cli_error(monkeypatch, capsys, kmeans_labels.cli, *fit)
    assert f"error: {out / 'feat'}: 1 of the {len(shard)} train frames sampled for k-means hold NaN/Inf" in line
    line = cli_error(monkeypatch, capsys, kmeans_labels.cli, "music-ssl-kmeans", "apply", out / "feat", "train",
                     out / "kmeans.safetensors", 1, 0, tmp_path / "lab", "--device", "cpu")
    assert line.startswith(f"error: {out / 'feat' / 'train_0_1.npy'}: its row 1 holds NaN/Inf features")
    assert not (tmp_path / "lab" / "train_0_1.km").exists()
    shard[:] = clean
    shard[150] = 1e30  # finite, but its squared distances overflow
    shard.flush()
    line = cli_error(monkeypatch, capsys, kmeans_labels.cli, *fit)
    assert "gave a non-finite inertia" in line and "nothing was saved" in line
    assert not (tmp_path / "refit.safetensors").exists()


# --- k-means sample size ---------------------------------------------------------------------------------------


def test_sample_size_rule_scales_with_k_and_the_corpus_under_a_memory_cap():
    gib = 2 ** 30
    # a large corpus: 10 % of the frames (fairseq's --percent 0.1)
    assert default_sample_size(50_000_000, 39, 500) == 5_000_000
    # a small corpus or a large k: 256 frames per cluster (FAISS's default sample per centroid)
    assert default_sample_size(2_000_000, 768, 2000) == FRAMES_PER_CLUSTER * 2000
    # memory budget: 8 GiB of 768-d float32 frames
    assert default_sample_size(100_000_000, 768, 2000) == 8 * gib // (4 * 768)
    # the old fixed cap stays available; a corpus smaller than the rule gives all its frames
    assert default_sample_size(50_000_000, 39, 500, max_frames=1_000_000) == 1_000_000
    assert default_sample_size(10_000, 39, 500) == 10_000
    with pytest.raises(LabelPrepError, match=r"percent=1.5: must be in \(0, 1\]"):
        FitSettings(percent=1.5)


def test_bad_sample_budget_below_k_is_a_clear_error(corpus, tmp_path):
    feat = tmp_path / "feat"
    mfcc_features(corpus, feat, nshard=1)
    with pytest.raises(LabelPrepError, match=r"^max_sample_gb=1e-06: holds only 6 frames of 39-d features for k=8"):
        fit_stage(feat, "train", 1, tmp_path / "km.safetensors", FitSettings(n_clusters=8, max_sample_gb=1e-6), "cpu")
    with pytest.raises(LabelPrepError, match="^max_frames=4: must be at least n_clusters=8"):
        FitSettings(n_clusters=8, max_frames=4)


# --- Python entry points: hear.load_model, FrozenEncoder, HFEncoder ---------------------------------------------


def not_checkpoints(tmp_path):
    (tmp_path / "random.pt").write_bytes(np.random.default_rng(0).bytes(4096))
    (tmp_path / "text.pt").write_text("model: music2vec\nlayers: 12\n")
    with zipfile.ZipFile(tmp_path / "zip.pt", "w") as z:
        z.writestr("notes.txt", "a zip, not a torch file")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "tensors.pt")  # a torch file, not a fairseq checkpoint
    return [tmp_path / n for n in ("random.pt", "text.pt", "zip.pt", "tensors.pt")]


def test_bad_checkpoint_files_give_one_line_naming_the_file(tmp_path):
    from music_ssl.checkpoint import FrozenEncoder
    from music_ssl.export import hear

    for path in not_checkpoints(tmp_path):
        for load in (FrozenEncoder.from_checkpoint, hear.load_model):
            with pytest.raises(CheckpointError) as err:
                load(str(path))
            message = str(err.value)
            assert message.startswith(f"{path}: ") and "\n" not in message and "fairseq-hydra-train" in message


def test_bad_checkpoint_cli_export_prints_one_line(tmp_path, monkeypatch, capsys):
    pytest.importorskip("transformers")
    from music_ssl.cli import export_hf

    for path in not_checkpoints(tmp_path):
        line = cli_error(monkeypatch, capsys, export_hf.cli, "music-ssl-export-hf", path, tmp_path / "out")
        assert line.startswith(f"error: {path}: ")
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    from test_export_hf import stock_hubert

    return stock_hubert(tmp_path_factory.mktemp("bad_input_ckpt"))


def test_bad_short_audio_and_device_auto_at_the_entry_points(tiny_checkpoint, tmp_path):
    pytest.importorskip("transformers")
    from music_ssl.checkpoint import AudioTooShortError, FrozenEncoder
    from music_ssl.export import hear
    from music_ssl.export.hf import export_checkpoint
    from music_ssl.export.hf_encoder import HFEncoder

    export_checkpoint(tiny_checkpoint, tmp_path / "hf")
    for encoder in (FrozenEncoder.from_checkpoint(tiny_checkpoint, device="auto"),
                    HFEncoder.from_pretrained(tmp_path / "hf", device="auto")):
        with pytest.raises(AudioTooShortError, match=r"item 1 has 399 samples, shorter than the encoder's receptive "
                                                     r"field \(400 samples = 25 ms at 16000 Hz\).*zero-pad"):
            encoder(torch.zeros(2, 1000), torch.tensor([1000, 399]))
        hidden, frames = encoder(torch.zeros(1, 400))
        assert frames.tolist() == [1]
    model = hear.load_model(str(tiny_checkpoint), device="auto")  # "auto": CUDA when present
    expected = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert model.encoder.device.type == expected.type
    emb, ts = hear.get_timestamp_embeddings(torch.zeros(2, 100), model)  # documented repair: padded to 400
    assert emb.shape == (2, 1, 64)
    with pytest.raises(hear.HearError, match="no sounds"):
        hear.get_timestamp_embeddings(torch.zeros(0, 16000), model)
    with pytest.raises(hear.HearError, match="layer=7"):
        hear.HearModel(model.encoder, layer=7)
    with pytest.raises(hear.HearModelNotFoundError, match="missing.pt'?: not found"):
        hear.load_model(str(tmp_path / "missing.pt"))
    with pytest.raises(MusicSSLError, match="device 'gpu7'"):
        hear.load_model(str(tiny_checkpoint), device="gpu7")


def test_bad_hf_folder_error_keeps_every_line_of_the_cause(tmp_path):
    pytest.importorskip("transformers")
    from music_ssl.export.hf_encoder import HFEncoder, HFModelError

    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "config.json").write_text("{not json")
    with pytest.raises(HFModelError) as err:
        HFEncoder.from_pretrained(tmp_path / "odd")
    assert str(err.value).startswith(f"{tmp_path / 'odd'}: ") and "\n" not in str(err.value)


def test_bad_multi_line_causes_are_kept_on_one_line():
    assert one_line(RuntimeError("first\n\tsecond\n\nthird")) == "RuntimeError: first / second / third"
    long = RuntimeError("advice " * 200 + "\nWeightsUnpickler error: Unsupported global: x.Y\nmore advice")
    assert one_line(long) == "RuntimeError: WeightsUnpickler error: Unsupported global: x.Y"


def test_bad_input_errors_all_derive_from_the_area_roots():
    """Every ``*Error`` class music_ssl defines is a MusicSSLError (one root per area, none unrelated)."""
    roots = (LabelError, CheckpointError, ExportError)
    found = []
    for info in pkgutil.walk_packages(music_ssl.__path__, "music_ssl."):
        if info.name.startswith(("music_ssl.config", "music_ssl.demo.__main__")):
            continue
        module = importlib.import_module(info.name)
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == info.name and name.endswith("Error"):
                found.append(cls)
                assert issubclass(cls, MusicSSLError), f"{info.name}.{name} does not derive from MusicSSLError"
    assert sum(issubclass(c, roots) for c in found) >= 8, found


# --- labels bound to the manifest they were made from ----------------------------------------------------------


def test_bad_labels_of_a_remade_manifest_are_refused_by_check_and_training(tmp_path, monkeypatch, capsys):
    """A manifest re-made with another --seed (same row counts, clips all 1 s) puts other clips on the rows: the
    labels' record (manifest fingerprint) tells, so `music-ssl-kmeans check` and the training task refuse them."""
    from music_ssl.data.manifest import read_manifest
    from music_ssl.data.manifest_builder import build_manifests
    from music_ssl.labels import LabelSettings, run_all
    from music_ssl.tasks.music_hubert_pretraining import MusicHubertPretrainingConfig, MusicHubertPretrainingTask

    audio, data, km = tmp_path / "audio", tmp_path / "data", tmp_path / "data" / "km"
    for i in range(12):
        (audio / f"c{i:02d}.wav").parent.mkdir(parents=True, exist_ok=True)
        sf.write(audio / f"c{i:02d}.wav", synth_clip(1.0, seed=i), SAMPLE_RATE)
    build_manifests(audio, data, 0.25, 0)
    run_all(data, km, LabelSettings.from_flat(n_clusters=4, percent=1.0, device="cpu"))
    before = read_manifest(data / "train.tsv")
    build_manifests(audio, data, 0.25, 1)  # what `music-ssl-manifest AUDIO --dest DATA --seed 1` writes
    after = read_manifest(data / "train.tsv")
    assert len(after) == len(before) and after.relpaths != before.relpaths  # same shape, other clips on the rows

    line = cli_error(monkeypatch, capsys, kmeans_labels.cli, "music-ssl-kmeans", "check", data, km)
    assert line.startswith(f"error: {km / 'train.km'}: made from other rows than {data / 'train.tsv'}")
    assert "music-ssl-kmeans all" in line
    task = MusicHubertPretrainingTask.setup_task(MusicHubertPretrainingConfig(data=str(data), label_dir=str(km),
                                                                              labels=["km"]))
    with pytest.raises(LabelError, match="made from other rows than"):
        task.load_dataset("train")
    build_manifests(audio, data, 0.25, 0)  # the manifest the labels were made from: accepted again
    assert kmeans_labels.check(data, km, splits=["train", "valid"])["train"].rows == len(before)
