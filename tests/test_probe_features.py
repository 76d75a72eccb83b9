"""Feature sources and the on-disk cache: shapes, the JukeMIR baselines, Jukebox files, cache hits and every
kind of invalidation, checkpoint sources (pretrained and random init)."""
import logging

import numpy as np
import pytest

from conftest import write_clips

from music_ssl.cli.common import run_main
from music_ssl.data.errors import AudioError
from music_ssl.probe.errors import MissingDataError, ProbeConfigError, ProbeDataError
from music_ssl.probe.features import FeatureSource, build_source, cache, load_features
from music_ssl.probe.features.handcrafted_source import moments


class CountingSource(FeatureSource):
    """A cheap source: one (1, 2, 3) vector per file from its size; counts ``extract`` calls."""
    kind = "counting"

    def __init__(self, version: int = 0):
        self.version, self.calls = version, 0

    def identity(self):
        return {"kind": self.kind, "version": self.version}

    def extract(self, paths, pooling, window, hop):
        self.calls += 1
        return [np.full((1, 2, 3), p.stat().st_size + self.version, np.float32) for p in paths], ["a", "b"], None


def test_moments_hand_case():
    # f = [1, 2, 4]: mean 7/3, std sqrt(14/9); Δf = [1, 2]: 1.5, .5; Δ²f = [1]: 1, 0
    out = moments(np.array([[1.0, 2.0, 4.0]], np.float32))
    np.testing.assert_allclose(out, [7 / 3, np.sqrt(14 / 9), 1.5, 0.5, 1.0, 0.0], rtol=1e-6)


@pytest.mark.parametrize("kind, dim", [("mfcc", 120), ("chroma", 72)])
def test_handcrafted_baselines_have_jukemir_sizes(tmp_path, kind, dim):
    paths = write_clips(tmp_path, 2, 2.0)
    source = build_source(kind)
    clip, names, rate = source.extract(paths, "clip", None, None)
    assert names == [kind] and rate == pytest.approx(22050 / 512)
    assert [a.shape for a in clip] == [(1, 1, dim)] * 2 and not np.allclose(clip[0], clip[1])
    windows, _, _ = source.extract(paths[:1], "window", 0.5, 0.5)
    assert windows[0].shape == (4, 1, dim)
    frames, _, _ = source.extract(paths[:1], "frames", None, None)
    assert frames[0].shape[1:] == (1, dim // 2) and abs(frames[0].shape[0] - 2.0 * rate) <= 2


def test_jukebox_files_and_their_errors(tmp_path):
    audio = write_clips(tmp_path / "audio", 2, 0.1)
    features = tmp_path / "jukebox"
    features.mkdir()
    np.save(features / "clip000.npy", np.arange(4800, dtype=np.float32))
    source = build_source("jukebox", features)
    with pytest.raises(MissingDataError, match=r"clip001\.npy: Jukebox feature file missing \(1 of 2 clips"):
        source.extract(audio, "clip", None, None)
    np.save(features / "clip001.npy", np.zeros((1, 4096), np.float32))
    with pytest.raises(ProbeDataError, match=r"clip001\.npy: expected a \(4800,\) Jukebox feature vector, got "
                                             r"shape \(1, 4096\)"):
        source.extract(audio, "clip", None, None)
    np.save(features / "clip001.npy", np.ones((1, 4800), np.float32))
    arrays, names, _ = source.extract(audio, "clip", None, None)
    assert names == ["jukebox36"] and [a.shape for a in arrays] == [(1, 1, 4800)] * 2
    np.testing.assert_array_equal(arrays[0][0, 0, :3], [0, 1, 2])
    with pytest.raises(ProbeConfigError, match="cannot serve a frame-level task"):
        source.extract(audio, "frames", None, None)
    with pytest.raises(MissingDataError, match="Jukebox feature folder not found"):
        build_source("jukebox", tmp_path / "nowhere")


def test_unknown_source_kind_and_missing_paths():
    with pytest.raises(ProbeConfigError, match="unknown source.kind 'wav2vec'"):
        build_source("wav2vec")
    with pytest.raises(ProbeConfigError, match="source.kind=checkpoint needs source.path"):
        build_source("checkpoint")
    with pytest.raises(MissingDataError, match=r"nope\.pt: fairseq checkpoint file not found"):
        build_source("checkpoint", "nope.pt")
    with pytest.raises(ProbeConfigError, match="random_init=true needs source.kind=checkpoint"):
        build_source("mfcc", random_init=True)


def test_cache_hit_and_every_invalidation(tmp_path, monkeypatch):
    paths = write_clips(tmp_path / "audio", 2, 0.2)
    store = tmp_path / "cache"
    source = CountingSource()

    def load(src=source, pooling="clip", window=None, files=paths):
        return load_features(src, files, pooling, window, None, store)

    first = load()
    again = load()
    assert source.calls == 1 and not first.from_cache and again.from_cache
    np.testing.assert_array_equal(np.stack(first.arrays), np.stack(again.arrays))
    assert again.layer_names == ["a", "b"] and again.frame_rate is None
    load(CountingSource(version=1))  # source identity (checkpoint hash, layers, random init, ...)
    load(pooling="window")  # pooling
    load(window=3.0)  # window / hop
    write_clips(tmp_path / "audio", 1, 0.3)  # clip000.wav rewritten: new size and mtime
    changed = load()
    assert source.calls == 4 and not changed.from_cache and changed.arrays[0][0, 0, 0] != first.arrays[0][0, 0, 0]
    monkeypatch.setattr(cache, "FEATURE_CODE_VERSION", cache.FEATURE_CODE_VERSION + 1)  # feature code
    load()
    assert source.calls == 5
    entries = list(store.rglob("*"))  # pathlib's "*" matches hidden names too
    assert any(p.suffix == ".npz" for p in entries)
    assert not [p for p in entries if ".tmp-" in p.name]  # written as .STEM.tmp-PID.EXT (core.atomic), renamed


def test_damaged_cache_entry_is_recomputed(tmp_path, caplog):
    paths = write_clips(tmp_path / "audio", 1, 0.2)
    source = CountingSource()
    load_features(source, paths, "clip", None, None, tmp_path / "cache")
    entry = next((tmp_path / "cache").rglob("*.npz"))
    entry.write_bytes(b"not an npz")
    features = load_features(source, paths, "clip", None, None, tmp_path / "cache")
    assert source.calls == 2 and not features.from_cache and "unreadable" in caplog.text


def test_cache_key_reports_missing_audio(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"gone\.wav: audio file not found") as err:
        load_features(CountingSource(), [tmp_path / "gone.wav"], "clip", None, None, tmp_path / "cache")
    assert isinstance(err.value, AudioError) and err.value.kind == "missing"


def test_missing_and_non_audio_files_reach_the_user_as_one_line(tmp_path, capsys):
    (tmp_path / "notes.wav").write_text("no audio here, just notes\n")
    cases = {"gone.wav": "gone.wav: audio file not found; check the path",
             "notes.wav": "notes.wav: not an audio file (soundfile: "}
    handlers, level = logging.root.handlers[:], logging.root.level  # run_main logs to the captured stderr
    for name, words in cases.items():
        try:
            with pytest.raises(SystemExit) as exit_info:  # the probe CLI's wrapper around its library call
                run_main(load_features, dict(source=build_source("mfcc"), paths=[tmp_path / name], pooling="clip",
                                             window=None, hop=None, cache_dir=tmp_path / "cache"))
        finally:
            logging.root.handlers[:] = handlers
            logging.root.setLevel(level)
        err = capsys.readouterr().err.strip().splitlines()
        assert exit_info.value.code == 1 and len(err) == 1 and err[0].startswith("error: ") and words in err[0]
    assert "re-encode it as wav/flac or remove it" in err[0]


@pytest.mark.slow  # trains the session's tiny checkpoints when no other test did
@pytest.mark.parametrize("name", ["music2vec", "music_hubert"])
def test_checkpoint_source_every_hidden_state_and_random_init(tiny_checkpoints, tmp_path, name):
    paths = write_clips(tmp_path / "audio", 3, 1.0) + write_clips(tmp_path / "long", 1, 2.5, seed=9)
    ckpt = tiny_checkpoints[name]
    source = build_source("checkpoint", ckpt, chunk_seconds=1.0, device="cpu")
    clip, names, rate = source.extract(paths, "clip", None, None)
    assert names == ["input", "layer1", "layer2", "layer3", "layer4"] and rate == 50.0
    assert [a.shape for a in clip] == [(1, 5, 64)] * 4 and clip[0].dtype == np.float32
    frames, _, _ = source.extract(paths, "frames", None, None)
    assert [a.shape for a in frames] == [(49, 5, 64)] * 3 + [(124, 5, 64)]  # the long file went in chunks
    np.testing.assert_allclose(frames[0].astype(np.float32).mean(0), clip[0][0], atol=2e-2)  # clip = frame mean
    random = build_source("checkpoint", ckpt, random_init=True, device="cpu")
    assert random.identity()["sha256"] == source.identity()["sha256"] and random.identity() != source.identity()
    assert cache.cache_key(random, paths, "clip", None, None) != cache.cache_key(source, paths, "clip", None, None)
    random_clip, _, _ = random.extract(paths[:1], "clip", None, None)
    assert random_clip[0].shape == (1, 5, 64) and not np.allclose(random_clip[0], clip[0], atol=1e-3)
    seeded, _, _ = build_source("checkpoint", ckpt, random_init=True, device="cpu").extract(paths[:1], "clip", None,
                                                                                           None)
    np.testing.assert_array_equal(seeded[0], random_clip[0])  # the random init is seeded
    picked = build_source("checkpoint", ckpt, layers=[0, 4], device="cpu")
    arrays, picked_names, _ = picked.extract(paths[:1], "clip", None, None)
    assert picked_names == ["input", "layer4"] and np.allclose(arrays[0], clip[0][:, [0, 4]], atol=1e-4)
    with pytest.raises(ProbeConfigError, match=r"source.layers \[7\] out of range: the encoder has 5"):
        build_source("checkpoint", ckpt, layers=[7], device="cpu").extract(paths[:1], "clip", None, None)


def test_unreadable_checkpoint_is_one_clear_line(tmp_path):
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    source = build_source("checkpoint", tmp_path / "bad.pt", device="cpu")
    with pytest.raises(ProbeDataError, match=r"bad\.pt: cannot be read as a fairseq checkpoint"):
        source.extract(write_clips(tmp_path, 1, 0.5), "clip", None, None)


# --- NaN/Inf and lying lengths stop the probe, naming the file (#20) ----------------------------------------------


def probe_error(monkeypatch, capsys, tmp_path, bad_path, *overrides) -> str:
    """The one ``error:`` line of ``music-ssl-probe`` (demo config, MFCC baseline) on a 10-clip CSV task whose
    fourth clip is ``bad_path``; asserts no results were written."""
    import soundfile as sf
    from test_bad_input_labels import cli_error

    from music_ssl.cli.probe import cli

    paths = write_clips(tmp_path / "audio", 10, 0.5)
    if bad_path != paths[3]:
        paths[3].unlink()
        paths[3] = bad_path
    split = ["train", "train", "train", "valid", "test"]
    csv = tmp_path / "task.csv"
    csv.write_text("path,label,split\n" + "".join(f"{p},{i % 2},{split[i % 5]}\n" for i, p in enumerate(paths)))
    assert all(sf.info(p).frames for p in paths)  # every header looks fine
    line = cli_error(monkeypatch, capsys, cli, "music-ssl-probe", "--config-name", "demo", f"data_root={tmp_path}",
                     f"tasks=[{{name:csv,path:'{csv}',type:multiclass}}]", "protocol.seeds=[0]",
                     "protocol.train.max_epochs=2", "device=cpu", "progress=false", f"out_dir={tmp_path / 'out'}",
                     f"cache_dir={tmp_path / 'cache'}", *overrides)
    assert not (tmp_path / "out" / "results.json").exists()
    return line


@pytest.mark.parametrize("bad", ["nan", "inf", "cut_wav", "lying_mp3"])
def test_bad_audio_stops_the_probe_naming_the_file(tmp_path, monkeypatch, capsys, bad):
    """Before: one NaN sample sent every layer to chance with exit 0; a cut WAV or mp3 was probed as it decoded."""
    import soundfile as sf
    from conftest import synth_clip

    audio = synth_clip(0.5, seed=3)
    path = tmp_path / "audio" / f"{bad}.{'mp3' if bad.endswith('mp3') else 'wav'}"
    path.parent.mkdir(parents=True, exist_ok=True)
    if bad in ("nan", "inf"):
        audio[4000] = np.nan if bad == "nan" else -np.inf
        sf.write(path, audio, 16000, subtype="FLOAT")
    else:
        sf.write(path, np.tile(audio, 4), 16000)  # 2 s, then cut to half its bytes: the header declares all 2 s
        path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])
    line = probe_error(monkeypatch, capsys, tmp_path, path)
    words = {"nan": "holds 1 non-finite samples (NaN/Inf), the first at sample 4000 (0.250 s)",
             "inf": "holds 1 non-finite samples (NaN/Inf), the first at sample 4000 (0.250 s)",
             "cut_wav": "truncated: holds 15989 of the 32000 samples its WAV header declares",
             "lying_mp3": "truncated: decodes to "}[bad]
    assert line.startswith(f"error: {path}: {words}"), line


def test_bad_nan_jukebox_features_stop_the_probe_naming_the_npy(tmp_path, monkeypatch, capsys):
    paths = write_clips(tmp_path / "audio", 10, 0.5)
    features = tmp_path / "jukebox"
    features.mkdir()
    for i, path in enumerate(paths):
        vector = np.random.default_rng(i).standard_normal(16).astype(np.float32)
        vector[5] = np.nan if i == 3 else vector[5]
        np.save(features / f"{path.stem}.npy", vector)
    line = probe_error(monkeypatch, capsys, tmp_path, paths[3], "source.kind=jukebox", f"source.path={features}",
                       "source.dim=16")
    assert line == (f"error: {features / 'clip003.npy'}: 1 of its 16 feature values are NaN/Inf (one such clip "
                    f"sends every probe to chance); re-extract this clip's features.")


class NanSource(CountingSource):
    """Features that are NaN in one layer of the second file (a checkpoint with NaN weights, an fp16 overflow)."""
    kind = "nan"

    def extract(self, paths, pooling, window, hop):
        arrays, names, rate = super().extract(paths, pooling, window, hop)
        arrays[1][0, 1, 0] = np.nan
        return arrays, names, rate


def test_bad_nan_features_of_any_source_or_old_cache_entry_are_refused_naming_the_file(tmp_path, capsys):
    paths = write_clips(tmp_path / "audio", 3, 0.2)
    handlers, level = logging.root.handlers[:], logging.root.level
    try:
        with pytest.raises(SystemExit) as exit_info:  # the probe CLI's wrapper around its library call
            run_main(load_features, dict(source=NanSource(), paths=paths, pooling="clip", cache_dir=tmp_path / "c"))
    finally:
        logging.root.handlers[:] = handlers
        logging.root.setLevel(level)
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert exit_info.value.code == 1 and err == [
        f"error: {paths[1]}: its nan features hold NaN/Inf in 1 of 1 frames/windows (b), computed from finite input "
        f"(audio samples are checked when read): check the checkpoint (NaN/Inf weights?) or drop the file."]
    assert not list((tmp_path / "c").rglob("*.npz"))  # nothing cached
    # an entry cached before NaN/Inf were refused is refused on a hit, too
    monkey = CountingSource()
    load_features(monkey, paths, "clip", None, None, tmp_path / "c")
    entry = next((tmp_path / "c").rglob("*.npz"))
    with np.load(entry) as stored:
        arrays = {key: stored[key] for key in stored.files}
    arrays["data"][2, 0, 1] = np.inf
    cache._write_atomic(entry, **arrays)
    with pytest.raises(ProbeDataError, match=rf"{paths[2]}: its counting features hold NaN/Inf in 1 of 1 "):
        load_features(monkey, paths, "clip", None, None, tmp_path / "c")
    assert monkey.calls == 1  # the hit was refused, not recomputed
