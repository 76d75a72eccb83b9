"""Bad input to probing and to the checkpoint reader (issue #20): one line naming the file and what it is, through
``music-ssl-probe`` (run in-process) or the public API. ``pytest -k bad`` runs them."""
import logging

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import SAMPLE_RATE, synth_clip, write_clips
from music_ssl.errors import CheckpointError
from music_ssl.probe.datasets import load_probe_dataset
from music_ssl.probe.errors import ProbeConfigError, ProbeDataError
from music_ssl.probe.features import build_source
from test_bad_input_labels import cli_error


@pytest.fixture(scope="module")
def stock_checkpoint(tmp_path_factory):
    from test_export_hf import stock_hubert

    return stock_hubert(tmp_path_factory.mktemp("bad_probe_ckpt"))


def probe_cli(monkeypatch, capsys, *overrides) -> str:
    """The one ``error:`` line of ``music-ssl-probe --config-name demo`` with ``overrides`` (in-process)."""
    from music_ssl.cli.probe import cli

    return cli_error(monkeypatch, capsys, cli, "music-ssl-probe", *overrides)


def write_csv(folder, rows: list, name: str = "task.csv"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("path,label,split\n" + "\n".join(rows) + "\n")
    return folder / name


def csv_corpus(root, short_seconds: float = None):
    """Six 1-s clips (two per split, labels a/b) and, with ``short_seconds``, one more test clip that short."""
    paths = write_clips(root / "audio", 6, 1.0)
    rows = [f"audio/{p.name},{'ab'[i % 2]},{['train', 'valid', 'test'][i // 2]}" for i, p in enumerate(paths)]
    if short_seconds is not None:
        sf.write(root / "audio" / "short.wav", synth_clip(short_seconds, seed=7), SAMPLE_RATE)
        rows.append("audio/short.wav,a,test")
    return write_csv(root, rows)


def run_overrides(tmp_path, csv_path, *source) -> list:
    return ["--config-name", "demo", f"data_root={tmp_path}", f"tasks=[{{name:csv,path:'{csv_path}'}}]", *source,
            f"out_dir={tmp_path / 'out'}", "protocol.seeds=[0]", "protocol.train.max_epochs=1", "device=cpu",
            "progress=false", "cache_dir=null"]


# --- a. audio shorter than the encoder's receptive field names the file ----------------------------------------

def test_bad_probe_audio_shorter_than_the_receptive_field_names_the_file(stock_checkpoint, tmp_path, monkeypatch,
                                                                         capsys):
    csv_path = csv_corpus(tmp_path, short_seconds=0.02)  # 320 samples < the 400-sample receptive field
    line = probe_cli(monkeypatch, capsys, *run_overrides(tmp_path, csv_path, "source.kind=checkpoint",
                                                         f"source.path={stock_checkpoint}"))
    assert line.startswith(f"error: {tmp_path / 'audio' / 'short.wav'}: 320 samples at 16000 Hz (20 ms), shorter "
                           f"than the encoder's receptive field (400 samples = 25 ms)"), line
    assert "item" not in line and "zero-pad the file" in line


# --- b. a non-checkpoint given as a checkpoint: what the file is, no advice to turn the safe unpickler off -------

class NotAllowed:  # a class torch's safe unpickler refuses
    pass


def test_bad_checkpoint_that_is_a_kmeans_model_or_features_says_what_it_is(tmp_path, monkeypatch, capsys):
    from music_ssl.checkpoint import FrozenEncoder
    from music_ssl.cli import export_hf
    from music_ssl.labels.kmeans_file import KMeansModel

    kmeans = tmp_path / "km.safetensors"
    KMeansModel(np.zeros((4, 3), np.float32), {"frame_rate": "100"}).save(kmeans)
    np.save(tmp_path / "clip.npy", np.zeros(8, np.float32))
    torch.save({"obj": NotAllowed()}, tmp_path / "pickled.pt")
    cases = {kmeans: "a safetensors file holding a k-means model (music-ssl-kmeans), not a fairseq checkpoint; ",
             tmp_path / "clip.npy": "a NumPy .npy array (a Jukebox feature file?), not a fairseq checkpoint; ",
             tmp_path / "pickled.pt": "cannot be read as a fairseq checkpoint (the safe unpickler (weights_only=True, "
                                      "kept on purpose) refused it: Unsupported global: GLOBAL "
                                      f"{__name__}.NotAllowed); "}
    for path, words in cases.items():
        with pytest.raises(CheckpointError) as err:
            FrozenEncoder.from_checkpoint(path)
        message = str(err.value)
        assert message.startswith(f"{path}: {words}") and "\n" not in message, message
        assert "weights_only=False" not in message and "likely succeed" not in message
    pytest.importorskip("transformers")
    line = cli_error(monkeypatch, capsys, export_hf.cli, "music-ssl-export-hf", kmeans, tmp_path / "out")
    assert line.startswith(f"error: {kmeans}: a safetensors file holding a k-means model")


# --- c. source.kind that does not suit source.path ---------------------------------------------------------------

def test_bad_source_kind_for_the_path_says_which_kind_it_looks_like(stock_checkpoint, tmp_path, monkeypatch, capsys):
    runs = tmp_path / "checkpoints"
    runs.mkdir()
    (runs / "checkpoint_best.pt").write_bytes(stock_checkpoint.read_bytes())
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text("{}")
    features = tmp_path / "features"
    features.mkdir()
    np.save(features / "clip.npy", np.zeros(16, np.float32))
    cases = [
        ("checkpoint", runs, "a folder of fairseq checkpoints (checkpoint_best.pt); set source.kind=checkpoint "
                             f"source.path={runs / 'checkpoint_best.pt'}."),
        ("checkpoint", hf, "a transformers model folder (it has config.json); set source.kind=hf."),
        ("checkpoint", features, "a folder of .npy feature files; set source.kind=jukebox."),
        ("hf", stock_checkpoint, "a torch file (a fairseq checkpoint?); set source.kind=checkpoint."),
        ("hf", features, "a folder of .npy feature files; set source.kind=jukebox."),
        ("jukebox", features / "clip.npy", "a NumPy .npy array (a Jukebox feature file?); set source.path to the "
                                           f"folder that holds the .npy files ({features}?) with source.kind=jukebox."),
        ("jukebox", stock_checkpoint, "a torch file (a fairseq checkpoint?); set source.kind=checkpoint."),
        ("jukebox", hf, "a transformers model folder (it has config.json); set source.kind=hf."),
    ]
    for kind, path, words in cases:
        with pytest.raises(ProbeConfigError) as err:
            build_source(kind, path, device="cpu")
        assert str(err.value).startswith(f"{path}: source.kind={kind} needs ") and str(err.value).endswith(
            f", but this looks like {words}"), str(err.value)
    for kind, path in (("checkpoint", stock_checkpoint), ("hf", hf), ("jukebox", features)):
        build_source(kind, path, device="cpu")  # each kind with what it needs
    csv_path = csv_corpus(tmp_path / "corpus")
    line = probe_cli(monkeypatch, capsys, *run_overrides(tmp_path, csv_path, "source.kind=hf",
                                                         f"source.path={stock_checkpoint}"))
    assert line == (f"error: {stock_checkpoint}: source.kind=hf needs a transformers model folder (config.json + "
                    f"model.safetensors), but this looks like a torch file (a fairseq checkpoint?); set "
                    f"source.kind=checkpoint.")


# --- d. a probe YAML with a syntax error: file and line ----------------------------------------------------------

def test_bad_probe_yaml_syntax_names_the_file_and_line(tmp_path, monkeypatch, capsys):
    header = "defaults:\n  - probe_schema\n  - _self_\nname: x\n"
    (tmp_path / "indent.yaml").write_text(header + "source:\n  kind: mfcc\n   path: bad\n")
    (tmp_path / "flow.yaml").write_text(header + "tasks: [{name: csv}\nsource: {kind: mfcc}\n")
    (tmp_path / "base.yaml").write_text("protocol:\n  name: [marble\n")
    (tmp_path / "uses_base.yaml").write_text("defaults:\n  - probe_schema\n  - base\n  - _self_\nname: x\n")
    expected = {
        "indent": f"{tmp_path / 'indent.yaml'}:7:8: YAML syntax error: mapping values are not allowed here; ",
        "flow": f"{tmp_path / 'flow.yaml'}:6:1: YAML syntax error: expected ',' or ']', but got '<scalar>' (while "
                f"parsing a flow sequence from line 5); ",
        "uses_base": f"{tmp_path / 'base.yaml'}:3:1: YAML syntax error: expected ',' or ']', but got '<stream end>' "
                     f"(while parsing a flow sequence from line 2); ",
    }
    for name, words in expected.items():
        line = probe_cli(monkeypatch, capsys, "--config-dir", tmp_path, "--config-name", name)
        assert line.startswith(f"error: {words}fix the YAML there"), line


# --- e. CSV tasks: a file in two splits (refused), labels never in train (warned) --------------------------------

def test_bad_csv_file_in_two_splits_is_a_leak_naming_the_file_and_both_rows(tmp_path):
    write_clips(tmp_path / "audio", 3, 0.2)
    rows = ["audio/clip000.wav,a,train", "audio/clip001.wav,b,valid", "audio/clip002.wav,a,test",
            "audio/../audio/clip000.wav,a,test"]  # the same file by another spelling
    with pytest.raises(ProbeDataError) as err:
        load_probe_dataset("csv", path=str(write_csv(tmp_path, rows)))
    assert str(err.value) == (f"{tmp_path / 'task.csv'}:5: {tmp_path / 'audio/../audio/clip000.wav'} is in the test "
                              f"split here and in the train split at row 2: a leak (the probe would be scored on a "
                              f"file it trained on; 1 file(s) in two splits); list each file in one split only.")


def test_bad_csv_labels_never_in_train_are_warned_with_the_cost(tmp_path, caplog):
    write_clips(tmp_path / "audio", 5, 0.2)
    rows = ["audio/clip000.wav,a,train", "audio/clip001.wav,b,train", "audio/clip002.wav,a,valid",
            "audio/clip003.wav,z,test", "audio/clip004.wav,b,test"]
    with caplog.at_level(logging.WARNING):
        task = load_probe_dataset("csv", path=str(write_csv(tmp_path, rows)))
    assert task.classes == ["a", "b", "z"] and len(task.split_items("test")) == 2  # kept as they are
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"{tmp_path / 'task.csv'}:5: 1 label(s) occur in test but never in train ('z'): the probe "
                        f"can never predict them: at most 50.0% of the test rows can be right; move some of their "
                        f"files to train in the split column, or drop their rows."]
    caplog.clear()
    tags = ["audio/clip000.wav,x;y,train", "audio/clip001.wav,y,valid", "audio/clip002.wav,x;w,test"]
    with caplog.at_level(logging.WARNING):
        load_probe_dataset("csv", path=str(write_csv(tmp_path, tags, "tags.csv")), type="multilabel")
    assert [r.getMessage() for r in caplog.records] == [
        f"{tmp_path / 'tags.csv'}:4: 1 tag(s) occur in test but never in train ('w'): the probe sees no positive of "
        f"them: their test ROC-AUC / AP are chance; move some of their files to train in the split column, or drop "
        f"their rows."]
