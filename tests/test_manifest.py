"""music-ssl-manifest (music_ssl/cli/manifest.py): scanning formats, train/valid split, skipped-file reporting, 16 kHz mono FLAC conversion."""
import logging
import re
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio

from conftest import SAMPLE_RATE, synth_clip
from music_ssl.data.errors import ManifestError
from music_ssl.data.manifest import read_manifest, shard_range
from music_ssl.data.manifest_builder import build_manifests, valid_mask
from music_ssl.cli import manifest as manifest_tool


def write(path, audio, rate, **kwargs):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio, rate, **kwargs)
    return path


def rows(dest):
    """{relpath: num_samples} of train + valid, and the two manifests."""
    train, valid = read_manifest(dest / "train.tsv"), read_manifest(dest / "valid.tsv")
    both = {rel: int(n) for m in (train, valid) for rel, n in zip(m.relpaths, m.sizes)}
    return both, train, valid


def test_every_format_is_listed_with_its_sample_count(tmp_path):
    audio = tmp_path / "audio"
    for i, (ext, fmt) in enumerate([("wav", "WAV"), ("flac", "FLAC"), ("ogg", "OGG"), ("mp3", "MP3")]):
        write(audio / f"sub{i % 2}" / f"clip{i}.{ext}", synth_clip(1.0 + 0.25 * i, i), SAMPLE_RATE, format=fmt)
    (audio / "notes.txt").write_text("not audio")
    summary = build_manifests(audio, tmp_path / "m", valid_percent=0.25, seed=0)
    listed, train, valid = rows(tmp_path / "m")
    assert train.root == valid.root == audio.resolve()
    assert listed == {str(p.relative_to(audio)): sf.info(p).frames for p in audio.rglob("clip*")}
    assert (summary.found, summary.rows, summary.skipped) == (4, {"train": 3, "valid": 1}, {})
    assert train.relpaths == sorted(train.relpaths)


def test_valid_split_by_percent_and_seed():
    assert valid_mask(200, 0.1, seed=0).sum() == 20 and valid_mask(10, 0.01, seed=0).sum() == 1
    np.testing.assert_array_equal(valid_mask(50, 0.2, seed=3), valid_mask(50, 0.2, seed=3))
    assert not np.array_equal(valid_mask(50, 0.2, seed=3), valid_mask(50, 0.2, seed=4))
    assert valid_mask(50, 0.0, seed=0).sum() == 0
    with pytest.raises(ManifestError, match="valid_percent=1.5"):
        valid_mask(10, 1.5, seed=0)


def test_unusable_files_are_reported_counted_and_fatal_only_when_strict(tmp_path, caplog):
    audio = tmp_path / "audio"
    for i in range(3):
        write(audio / f"good{i}.wav", synth_clip(1.0, i), SAMPLE_RATE)
    (audio / "broken.wav").write_bytes(b"RIFF....not really")
    write(audio / "empty.wav", np.zeros(0, np.float32), SAMPLE_RATE)
    write(audio / "cd.wav", np.zeros((4410, 2), np.float32), 44100)
    with caplog.at_level(logging.WARNING):
        summary = build_manifests(audio, tmp_path / "m", valid_percent=0.0)
    assert summary.skipped == {"unreadable": 1, "empty": 1, "not 16 kHz mono": 1}
    assert summary.rows == {"train": 3, "valid": 0}
    assert any("broken.wav: damaged audio, cannot be opened (soundfile: " in r.message for r in caplog.records)
    assert any("cd.wav: is 44100 Hz" in r.message and "set convert_dir" in r.message for r in caplog.records)
    assert any(line == "skipped (unreadable): 1 files" for line in summary.lines())
    with pytest.raises(ManifestError, match=r"3 of 6 files cannot be used \(first: .*broken.wav") as err:
        build_manifests(audio, tmp_path / "strict", strict=True)
    assert "\n" not in str(err.value) and not (tmp_path / "strict" / "train.tsv").exists()


def test_conversion_resamples_downmixes_and_segments_whole_tracks_into_one_split(tmp_path):
    audio = tmp_path / "audio"
    left, right = synth_clip(5.3, 1, 44100), synth_clip(5.3, 2, 44100)
    write(audio / "a" / "song.wav", np.stack([left, right], 1), 44100)
    write(audio / "b.mp3", synth_clip(3.0, 3, 22050), 22050, format="MP3")
    write(audio / "tiny.wav", synth_clip(0.5, 4), SAMPLE_RATE)
    summary = build_manifests(audio, tmp_path / "m", valid_percent=0.4, seed=0, convert_dir=tmp_path / "flac",
                              segment_seconds=2.0, min_seconds=1.0)
    listed, train, valid = rows(tmp_path / "m")
    assert train.root == (tmp_path / "flac").resolve()
    song = {rel: n for rel, n in listed.items() if rel.startswith("a/song_")}
    assert song == {"a/song_0000.flac": 32000, "a/song_0001.flac": 32000, "a/song_0002.flac": 20800}
    assert {rel[:1] for rel in valid.relpaths} in ({"a"}, {"b"})  # a whole track goes to valid, never a part
    assert summary.skipped == {"shorter than min_seconds": 1} and summary.dropped_tail_seconds == pytest.approx(0.5)
    for rel, n in listed.items():
        info = sf.info(train.root / rel)
        assert (info.samplerate, info.channels, info.frames, info.format) == (SAMPLE_RATE, 1, n, "FLAC")
    converted = np.concatenate([sf.read(train.root / f"a/song_{i:04d}.flac", dtype="float32")[0] for i in range(3)])
    expected = torchaudio.functional.resample(torch.from_numpy((left + right) / 2), 44100, SAMPLE_RATE).numpy()
    n = min(len(converted), len(expected))
    assert abs(len(converted) - len(expected)) <= 2
    assert np.corrcoef(converted[1000:n - 1000], expected[1000:n - 1000])[0, 1] > 0.999


def test_cli_prints_one_error_line_and_exits_1(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["music-ssl-manifest", str(tmp_path / "nowhere"), "--dest", str(tmp_path)])
    with pytest.raises(SystemExit) as exit_info:
        manifest_tool.cli()
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 1 and len(err) == 1
    assert err[0].startswith("error: ") and "nowhere: audio folder not found" in err[0]


def test_segmenting_needs_a_convert_dir(tmp_path):
    write(tmp_path / "audio" / "x.wav", synth_clip(0.5, 0), SAMPLE_RATE)
    with pytest.raises(ManifestError, match="segment_seconds=30.0: needs convert_dir"):
        build_manifests(tmp_path / "audio", tmp_path / "m", segment_seconds=30.0)


def test_setting_errors_name_the_library_parameter_not_a_cli_flag(tmp_path):
    """A Python caller never typed ``--min-seconds``: library messages name the parameter it passed."""
    from music_ssl.data.audit import AuditSettings

    write(tmp_path / "audio" / "x.wav", synth_clip(0.5, 0), SAMPLE_RATE)
    calls = {r"min_seconds=-1 jobs=1: need min_seconds >= 0 and jobs >= 1": dict(min_seconds=-1),
             r"min_seconds=1.0 jobs=0: need min_seconds >= 0 and jobs >= 1": dict(jobs=0),
             r"no files with extensions xyz; check the folder or extensions": dict(extensions=("xyz",)),
             r"shorter than min_seconds=1; lower min_seconds to keep it\); .*set strict=False": dict(strict=True)}
    for match, kwargs in calls.items():
        with pytest.raises(ManifestError, match=match) as err:
            build_manifests(tmp_path / "audio", tmp_path / "m", **kwargs)
        assert "--" not in str(err.value), str(err.value)
    with pytest.raises(ManifestError, match=r"^min_seconds=-0.5: must be >= 0"):
        AuditSettings.from_seconds(-0.5)


def test_shard_ranges_cover_every_row_once():
    for total, nshard in [(10, 3), (2, 5), (0, 2), (7, 1)]:
        ranges = [shard_range(total, nshard, r) for r in range(nshard)]
        assert ranges[0][0] == 0 and ranges[-1][1] == total
        assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))


# --- the one audio reader (music_ssl/data/audio.py) and the one resampler (music_ssl/data/resample.py) ---------


def test_permissive_read_downmixes_and_resamples_a_44k_stereo_file(tmp_path):
    from music_ssl.data.audio import read_audio

    t = np.arange(int(1.5 * 44100)) / 44100
    tone = np.sin(2 * np.pi * 440.0 * t)
    path = write(tmp_path / "st44.wav", np.stack([0.5 * tone, 0.3 * tone], 1).astype(np.float32), 44100,
                 subtype="FLOAT")
    audio, rate = read_audio(path, SAMPLE_RATE)
    assert rate == SAMPLE_RATE and audio.dtype == np.float32 and audio.shape == (24000,)
    reference = 0.4 * np.sin(2 * np.pi * 440.0 * np.arange(24000) / SAMPLE_RATE)  # the channels' mean
    np.testing.assert_allclose(audio[200:-200], reference[200:-200], atol=1e-5)  # edges: the filter's ramp
    window, _ = read_audio(path, SAMPLE_RATE, offset=0.5, duration=0.25)  # only that window is decoded
    assert window.shape == (4000,)
    np.testing.assert_allclose(window[200:-200], reference[8200:11800], atol=1e-5)
    native, rate = read_audio(path, mono=False)  # the file's rate and channels kept
    assert rate == 44100 and native.shape == (len(t), 2)


def test_strict_read_refuses_what_training_would_not_read(tmp_path):
    from music_ssl.data.audio import read_audio, read_training_audio
    from music_ssl.data.errors import AudioError

    clip = synth_clip(0.5, 0)
    good = write(tmp_path / "good.wav", clip, SAMPLE_RATE, subtype="FLOAT")
    np.testing.assert_array_equal(read_training_audio(good, 8000), clip)
    cases = {write(tmp_path / "hi.wav", synth_clip(0.5, 1, 44100), 44100): ("rate", "hi.wav: is 44100 Hz, expected "
                                                                                    "16000 Hz; convert the corpus"),
             write(tmp_path / "st.wav", np.stack([clip, clip], 1), SAMPLE_RATE): ("channels", "st.wav: has 2 channels"),
             good: ("frames", "good.wav: 8000 samples but the manifest says 9000")}
    for path, (kind, words) in cases.items():
        with pytest.raises(AudioError, match=re.escape(words)) as err:
            read_training_audio(path, 9000 if path == good else None)
        assert err.value.kind == kind and "\n" not in str(err.value)
    with pytest.raises(AudioError, match=r"hi\.wav: is 44100 Hz") as err:
        read_audio(tmp_path / "hi.wav", strict=True)  # the same check, through the one read function
    assert err.value.kind == "rate"
    assert read_audio(tmp_path / "hi.wav", SAMPLE_RATE)[0].shape == (8000,)  # the permissive read converts it


def test_streaming_resampler_equals_the_one_shot_resampler(tmp_path):
    from music_ssl.data.audio import read_audio, read_audio_blocks
    from music_ssl.data.resample import resample, resample_blocks

    signal = synth_clip(2.3, 3, 44100)
    whole = resample(signal, 44100, SAMPLE_RATE)
    assert whole.dtype == np.float32 and whole.shape == (round(len(signal) * SAMPLE_RATE / 44100),)
    cuts = [0, 1, 1, 4410, 7000, 44100, 60000, len(signal)]  # odd sizes and an empty block
    streamed = np.concatenate(list(resample_blocks((signal[a:b] for a, b in zip(cuts, cuts[1:])), 44100,
                                                   SAMPLE_RATE)))
    np.testing.assert_allclose(streamed, whole, atol=1e-6)
    np.testing.assert_array_equal(resample(signal, 44100, 44100), signal)  # equal rates: untouched
    path = write(tmp_path / "st.flac", np.stack([signal, 0.5 * signal], 1), 44100)
    blocks = list(read_audio_blocks(path, SAMPLE_RATE, block_seconds=0.3))
    assert len(blocks) > 5
    np.testing.assert_allclose(np.concatenate(blocks), read_audio(path, SAMPLE_RATE)[0], atol=1e-6)
