"""The demo corpus: deterministic from its seed, labels consistent with the audio, clear errors, reuse."""
import csv
import shutil

import librosa
import numpy as np
import pytest
import soundfile as sf

from music_ssl.demo import CorpusError, load_corpus, make_corpus
from music_ssl.demo.midi import KEYS

pytestmark = pytest.mark.skipif(shutil.which("fluidsynth") is None, reason="needs FluidSynth (make env installs it)")


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus") / "c", n_pieces=6, n_notes=8, piece_seconds=3.0, seed=3)


def test_same_seed_gives_the_same_audio_bytes_and_another_seed_does_not(corpus, tmp_path):
    again = make_corpus(tmp_path / "again", n_pieces=6, n_notes=8, piece_seconds=3.0, seed=3)
    other = make_corpus(tmp_path / "other", n_pieces=6, n_notes=8, piece_seconds=3.0, seed=4)
    wavs = sorted(p.relative_to(corpus.root) for p in corpus.audio_dir.rglob("*.wav"))
    assert wavs == sorted(p.relative_to(again.root) for p in again.audio_dir.rglob("*.wav"))
    assert all((corpus.root / w).read_bytes() == (again.root / w).read_bytes() for w in wavs)
    assert rows(corpus.task_csvs["key"]) != rows(other.task_csvs["key"])


def test_every_clip_is_16k_mono_of_the_set_length_with_a_label_and_split(corpus):
    for task, n, seconds in (("key", 6, 3.0), ("pitch", 8, 1.5)):
        table = rows(corpus.task_csvs[task])
        assert len(table) == n and {r["split"] for r in table} <= {"train", "valid", "test"}
        for r in table:
            info = sf.info(corpus.root / r["path"])
            assert (info.samplerate, info.channels, info.frames) == (16000, 1, int(seconds * 16000))
    assert {r["label"] for r in rows(corpus.task_csvs["key"])} <= set(KEYS)


def test_single_notes_sound_at_their_labelled_pitch(corpus):
    for r in rows(corpus.task_csvs["pitch"]):
        audio, sr = sf.read(corpus.root / r["path"], dtype="float32")
        f0, voiced, _ = librosa.pyin(audio[: sr // 2], fmin=80, fmax=1200, sr=sr, frame_length=2048)
        midi = np.nanmedian(librosa.hz_to_midi(f0[voiced]))
        assert abs(midi - int(r["label"])) < 0.5, (r["path"], midi, r["label"])


def test_beat_files_follow_the_tempo_and_lie_inside_the_clip(corpus):
    for piece in rows(corpus.root / "pieces.csv"):
        beats = np.loadtxt(corpus.root / piece["beats"], ndmin=2)
        assert 0 <= beats[0, 0] < 60 / float(piece["tempo"]) and beats[-1, 0] < 3.0
        np.testing.assert_allclose(np.diff(beats[:, 0]), 60 / float(piece["tempo"]), atol=1e-5)
        assert list(beats[:4, 1]) == [1, 2, 3, 4][: len(beats[:4])]


def test_rerun_reuses_and_a_changed_file_is_detected(corpus):
    assert make_corpus(corpus.root, n_pieces=6, n_notes=8, piece_seconds=3.0, seed=3).reused
    victim = next(corpus.audio_dir.rglob("*.wav"))
    original = victim.read_bytes()
    try:
        victim.write_bytes(original[:100])
        with pytest.raises(CorpusError, match="incomplete.*make it with"):
            load_corpus(corpus.root)
    finally:
        victim.write_bytes(original)


def test_bad_arguments_and_foreign_folders_are_clear_errors(tmp_path):
    with pytest.raises(CorpusError, match="piece_seconds=1.0"):
        make_corpus(tmp_path / "x", n_pieces=2, n_notes=0, piece_seconds=1.0)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(CorpusError, match="not a demo corpus"):
        make_corpus(tmp_path / "mine", n_pieces=2, n_notes=0)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
