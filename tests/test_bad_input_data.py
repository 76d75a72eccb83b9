"""Bad audio through the data side: `music-ssl-manifest audit`, the pretraining tasks' pre-flight, the plain scan and
the converter (music_ssl/data/{audit,preflight,manifest_builder,convert}.py), and a converter killed mid-run.

Every bad file is made here in tmp_path; each case asserts the one line names the file and the fix.
`pytest -k "bad or fault"` selects these tests.
"""
import json
import logging
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import SAMPLE_RATE, synth_clip
from music_ssl.cli import manifest as manifest_tool
from music_ssl.data import audit as audit_module
from music_ssl.data.audit import RECEPTIVE_FIELD, AuditSettings, audit_manifest
from music_ssl.data.manifest import read_manifest
from music_ssl.data.manifest_builder import build_manifests
from music_ssl.data.preflight import header_info, preflight_manifest
from music_ssl.errors import DataError

AUDIT_FIX = "--write-clean"
CONVERT = "--convert-dir"


def write(path: Path, audio, rate=SAMPLE_RATE, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio, rate, **kwargs)
    return path


def truncate(path: Path, keep: float = 0.5) -> Path:
    """Cut a file to ``keep`` of its bytes (its header still declares every sample)."""
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])
    return path


def bad_corpus(audio: Path) -> dict:
    """One file per kind of bad row, plus good ones: {name: (relpath, manifest num_samples, expected kind)}."""
    write(audio / "good0.flac", synth_clip(1.0, 0))
    write(audio / "good1.wav", synth_clip(1.0, 1))
    truncate(write(audio / "cut.flac", synth_clip(3.0, 2)))
    (audio / "text.wav").write_text("this is not audio\n" * 20)
    (audio / "zero.wav").write_bytes(b"")
    write(audio / "nosamples.wav", np.zeros(0, np.float32))
    write(audio / "cd.wav", synth_clip(0.5, 3, 44100), 44100)
    write(audio / "stereo.wav", np.stack([synth_clip(0.5, 4), synth_clip(0.5, 5)], 1))
    write(audio / "tiny.wav", synth_clip(0.02, 6))  # 320 samples < the 400-sample receptive field
    write(audio / "changed.wav", synth_clip(0.75, 7))
    return {"good0.flac": (16000, None), "good1.wav": (16000, None), "cut.flac": (48000, "truncated"),
            "text.wav": (16000, "not audio"), "zero.wav": (16000, "empty"), "nosamples.wav": (16000, "empty"),
            "cd.wav": (8000, "rate"), "stereo.wav": (8000, "channels"), "tiny.wav": (320, "short"),
            "changed.wav": (16000, "frames"), "deleted.wav": (16000, "missing")}


def write_tsv(tsv: Path, root: Path, rows: dict) -> Path:
    tsv.parent.mkdir(parents=True, exist_ok=True)
    tsv.write_text(f"{root}\n" + "".join(f"{rel}\t{n}\n" for rel, (n, _) in rows.items()))
    return tsv


def run_cli(argv, capsys):
    """The console script in-process: (exit code, stderr lines). Its stderr log handler is removed afterwards (it
    writes to this test's captured stream, closed after the test)."""
    code, handlers, level = 0, logging.root.handlers[:], logging.root.level
    try:
        manifest_tool.cli([str(a) for a in argv])
    except SystemExit as exit_info:
        code = exit_info.code
    finally:
        logging.root.handlers[:] = handlers
        logging.root.setLevel(level)
    return code, capsys.readouterr().err.splitlines()


def one_error_line(code, err):
    errors = [line for line in err if line.startswith("error: ")]
    assert code == 1 and len(errors) == 1 and not any("Traceback" in line for line in err), err
    return errors[0]


# --- audit ------------------------------------------------------------------------------------------------------


def test_bad_rows_each_reported_on_one_line_by_the_audit_with_bad_tsv_and_clean_manifest(tmp_path, capsys):
    rows = bad_corpus(tmp_path / "audio")
    tsv = write_tsv(tmp_path / "m" / "train.tsv", tmp_path / "audio", rows)
    original = tsv.read_bytes()
    code, err = run_cli(["audit", tmp_path / "m", "--jobs", "2"], capsys)
    line = one_error_line(code, err)
    assert "9 bad rows" in line and "train.bad.tsv" in line and AUDIT_FIX in line
    bad = [r.split("\t") for r in (tmp_path / "m" / "train.bad.tsv").read_text().splitlines()[1:]]
    expected = {rel: kind for rel, (_, kind) in rows.items() if kind}
    assert {r[1]: r[3] for r in bad} == expected
    assert [int(r[0]) for r in bad] == [i + 2 for i, (_, kind) in enumerate(rows.values()) if kind]  # file lines
    for rel, kind in expected.items():  # one warning line each, naming manifest:line, the file and a fix
        said = [w for w in err if f"{tmp_path / 'audio' / rel}:" in w]
        assert len(said) == 1 and "train.tsv:" in said[0], (rel, err)
        assert (CONVERT if kind in ("rate", "channels") else AUDIT_FIX) in said[0]
    assert any("not an audio file (soundfile: " in w and "text.wav" in w for w in err)
    assert any("has 2 channels, expected mono" in w and "downmixed" in w for w in err)
    assert any("truncated or damaged" in w and "cut.flac" in w for w in err)

    code, err = run_cli(["audit", tmp_path / "m", "--write-clean"], capsys)
    assert code == 0 and tsv.read_bytes() == original  # never in place
    clean = read_manifest(tmp_path / "m" / "train.clean.tsv")
    assert clean.relpaths == ["good0.flac", "good1.wav"] and clean.root == tmp_path / "audio"


def test_bad_short_rows_follow_the_audit_min_seconds(tmp_path):
    write(tmp_path / "a" / "half.wav", synth_clip(0.5, 0))
    tsv = write_tsv(tmp_path / "m" / "train.tsv", tmp_path / "a", {"half.wav": (8000, None)})
    assert audit_manifest(tsv).bad == []
    result = audit_manifest(tsv, AuditSettings.from_seconds(1.0))
    assert [(r.kind, r.line) for r in result.bad] == [("short", 2)] and "minimum of 16000 samples" in result.bad[0].detail


def test_bad_rows_cached_audit_is_reused_until_a_file_or_the_manifest_changes(tmp_path):
    write_clips = [write(tmp_path / "a" / f"c{i}.wav", synth_clip(1.0, i)) for i in range(3)]
    tsv = write_tsv(tmp_path / "m" / "train.tsv", tmp_path / "a", {p.name: (16000, None) for p in write_clips})
    first = audit_manifest(tsv)
    assert not first.cached and first.bad == [] and json.loads((tmp_path / "m" / "train.audit.json").read_text())
    assert audit_manifest(tsv).cached
    write(write_clips[1], synth_clip(0.5, 9))  # same name, new size and mtime
    again = audit_manifest(tsv)
    assert not again.cached and [(r.relpath, r.kind) for r in again.bad] == [("c1.wav", "frames")]
    assert audit_manifest(tsv).cached
    tsv.write_text(tsv.read_text().replace("c1.wav\t16000", "c1.wav\t8000"))  # the manifest changed
    fixed = audit_manifest(tsv)
    assert not fixed.cached and fixed.bad == []


def test_fault_interrupted_audit_resumes_without_decoding_finished_rows_again(tmp_path, monkeypatch):
    clips = [write(tmp_path / "a" / f"c{i}.wav", synth_clip(0.5, i)) for i in range(10)]
    (tmp_path / "a" / "c3.wav").write_text("text")
    tsv = write_tsv(tmp_path / "m" / "train.tsv", tmp_path / "a", {p.name: (8000, None) for p in clips})
    monkeypatch.setattr(audit_module, "ROWS_PER_TASK", 2)
    real_task, decoded = audit_module.audit_task, []

    def killed_after_three(task):  # the process dies while the fourth task runs
        if len(decoded) == 6:
            raise KeyboardInterrupt
        decoded.extend(rel for _, rel, _ in task[2])
        return real_task(task)

    monkeypatch.setattr(audit_module, "audit_task", killed_after_three)
    with pytest.raises(KeyboardInterrupt):
        audit_manifest(tsv)
    assert audit_module.partial_path(tsv).is_file() and not audit_module.cache_path(tsv).exists()
    decoded.clear()
    monkeypatch.setattr(audit_module, "audit_task", lambda task: (decoded.extend(r for _, r, _ in task[2]),
                                                                   real_task(task))[1])
    resumed = audit_manifest(tsv)
    assert decoded == [f"c{i}.wav" for i in range(6, 10)]  # only the unfinished rows
    assert [(r.line, r.kind) for r in resumed.bad] == [(5, "not audio")]
    assert not audit_module.partial_path(tsv).exists()
    assert [(r.line, r.kind) for r in audit_manifest(tsv, jobs=1).bad] == [(5, "not audio")]


def test_bad_audit_folder_or_manifest_is_one_error_line(tmp_path, capsys):
    line = one_error_line(*run_cli(["audit", tmp_path / "nowhere"], capsys))
    assert "nowhere: manifest folder not found" in line
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "train.tsv").write_text("/root\nno-tab-here\n")
    line = one_error_line(*run_cli(["audit", tmp_path / "m"], capsys))
    assert "train.tsv:2: expected `relpath<TAB>num_samples`" in line


# --- pre-flight of the pretraining tasks ----------------------------------------------------------------------


def test_bad_rows_stop_the_preflight_with_one_line_count_and_audit_command(tmp_path):
    rows = bad_corpus(tmp_path / "audio")
    tsv = write_tsv(tmp_path / "m" / "train.tsv", tmp_path / "audio", rows)
    with pytest.raises(DataError) as err:
        preflight_manifest(tsv)
    message = str(err.value)
    # the header check cannot see the cut FLAC (its header is intact): 8 of the 9 bad rows
    assert "\n" not in message and "8 of 11 rows cannot be trained on" in message and "from file headers" in message
    assert f"line 5: {tmp_path / 'audio' / 'text.wav'}: not an audio file" in message
    assert "`music-ssl-manifest audit " in message and "train.bad.tsv" in message and "and 5 more" in message


@pytest.mark.parametrize("name", ["stereo.wav", "cd.wav", "text.wav", "zero.wav", "deleted.wav", "changed.wav",
                                  "tiny.wav", "nosamples.wav"])
def test_bad_single_row_named_by_the_preflight_with_its_fix(tmp_path, name):
    rows = bad_corpus(tmp_path / "audio")
    tsv = write_tsv(tmp_path / "m" / "train.tsv", tmp_path / "audio", {"good0.flac": rows["good0.flac"],
                                                                         name: rows[name]})
    with pytest.raises(DataError) as err:
        preflight_manifest(tsv)
    message = str(err.value)
    assert f"line 3: {tmp_path / 'audio' / name}: " in message and "1 of 2 rows" in message
    fix = CONVERT if rows[name][1] in ("rate", "channels") else AUDIT_FIX
    assert "Fix: " in message and fix in message
    if name == "stereo.wav":  # one stereo policy: refused, the converter downmixes on request
        assert "has 2 channels, expected mono" in message and "downmixed" in message


def test_bad_short_row_is_left_to_fairseq_when_min_sample_size_drops_it(tmp_path):
    rows = bad_corpus(tmp_path / "audio")
    tsv = write_tsv(tmp_path / "m" / "train.tsv", tmp_path / "audio", {"tiny.wav": rows["tiny.wav"]})
    with pytest.raises(DataError, match="shorter than the model's receptive field of 400"):
        preflight_manifest(tsv, min_sample_size=None)
    assert len(preflight_manifest(tsv, min_sample_size=RECEPTIVE_FIELD)) == 1  # fairseq skips and counts it


def test_bad_preflight_uses_a_fresh_audit_which_sees_truncation(tmp_path):
    rows = bad_corpus(tmp_path / "audio")
    keep = {k: rows[k] for k in ("good0.flac", "good1.wav", "cut.flac")}
    tsv = write_tsv(tmp_path / "m" / "train.tsv", tmp_path / "audio", keep)
    assert len(preflight_manifest(tsv)) == 3  # headers alone look fine
    audit_manifest(tsv, write_clean=True)
    with pytest.raises(DataError, match=r"1 of 3 rows .*from audit train.audit.json.*cut.flac: truncated"):
        preflight_manifest(tsv)
    assert len(preflight_manifest(tmp_path / "m" / "train.clean.tsv")) == 2
    truncate(tmp_path / "audio" / "good1.wav", 0.9)  # a change after the audit: the header check runs again
    with pytest.raises(DataError, match=r"from file headers\): line 3: .*good1.wav: truncated: holds \d+ of the "
                                        r"16000 samples its WAV header declares"):
        preflight_manifest(tmp_path / "m" / "train.clean.tsv")


def test_bad_stereo_row_stops_both_pretraining_tasks_at_load_dataset(audio_corpus):
    from music_ssl.tasks.music2vec_pretraining import Music2VecPretrainingConfig, Music2VecPretrainingTask
    from music_ssl.tasks.music_hubert_pretraining import MusicHubertPretrainingConfig, MusicHubertPretrainingTask

    stereo = write(audio_corpus.parent / "audio" / "train" / "stereo.wav", np.zeros((32000, 2), np.float32))
    tsv = audio_corpus / "train.tsv"
    tsv.write_text(tsv.read_text() + "train/stereo.wav\t32000\n")
    km = audio_corpus / "train.km"
    km.write_text(km.read_text() + " ".join(["0"] * 100) + "\n")
    from omegaconf import OmegaConf

    tasks = [Music2VecPretrainingTask.setup_task(OmegaConf.structured(
                 Music2VecPretrainingConfig(data=str(audio_corpus), tpu=False))),
             MusicHubertPretrainingTask.setup_task(MusicHubertPretrainingConfig(
                 data=str(audio_corpus), label_dir=str(audio_corpus), labels=["km"], label_rate=50.0))]
    for task in tasks:
        with pytest.raises(DataError) as err:
            task.load_dataset("train")
        assert f"{stereo}: has 2 channels, expected mono" in str(err.value) and CONVERT in str(err.value)
        task.load_dataset("valid")  # the clean split loads


def test_bad_header_parser_agrees_with_soundfile(tmp_path):
    x = synth_clip(0.3, 0)
    files = [write(tmp_path / f"{sub}.wav", x, subtype=sub) for sub in ("PCM_16", "PCM_24", "PCM_32")]
    files += [write(tmp_path / f"{sub}.flac", x, subtype=sub) for sub in ("PCM_16", "PCM_24")]
    files += [write(tmp_path / "st44.wav", np.stack([x, x], 1), 44100), write(tmp_path / "st.flac", np.stack([x, x], 1))]
    files += [write(tmp_path / "u8.wav", x, subtype="PCM_U8")]
    for path in files:
        info = sf.info(path)
        assert header_info(path) == (info.samplerate, info.channels, info.frames), path
    # float samples (to be checked for NaN/Inf) and a cut data chunk are left to soundfile and inspect_audio
    for path in (truncate(write(tmp_path / "cut.wav", x), 0.7),
                 *(write(tmp_path / f"f{sub}.wav", x, subtype=sub) for sub in ("FLOAT", "DOUBLE"))):
        with pytest.raises(ValueError, match="not plain WAV/FLAC"):
            header_info(path)


# --- plain scan and converter ----------------------------------------------------------------------------------


def test_bad_files_never_listed_by_the_plain_scan(tmp_path, caplog, capsys):
    audio = tmp_path / "audio"
    for i in range(3):
        write(audio / f"good{i}.flac", synth_clip(1.5, i))
    truncate(write(audio / "cut.flac", synth_clip(3.0, 5)))
    write(audio / "short.wav", synth_clip(0.1, 6))
    (audio / "text.wav").write_text("hello, I am a text file\n")
    write(audio / "stereo.wav", np.zeros((16000, 2), np.float32))
    summary = build_manifests(audio, tmp_path / "m", valid_percent=0.0, jobs=2)
    listed = read_manifest(tmp_path / "m" / "train.tsv")
    assert listed.relpaths == ["good0.flac", "good1.flac", "good2.flac"] and set(listed.sizes) == {24000}
    assert summary.skipped == {"truncated": 1, "shorter than min_seconds": 1, "not audio": 1, "not 16 kHz mono": 1}
    said = [r.getMessage() for r in caplog.records]
    assert any("cut.flac: truncated or damaged" in m and "re-encode" in m for m in said)
    assert any("short.wav: 0.100 s, shorter than min_seconds=1" in m for m in said)
    assert any("text.wav: not an audio file (soundfile: " in m and "text starting" in m for m in said)
    assert any("stereo.wav: has 2 channels, expected mono" in m and "set convert_dir" in m for m in said)
    summary = build_manifests(audio, tmp_path / "m2", valid_percent=0.0, min_seconds=0.05)  # a documented minimum
    assert summary.rows["train"] == 4 and read_manifest(tmp_path / "m2" / "train.tsv").sizes[-1] == 1600
    line = one_error_line(*run_cli([audio, "--dest", tmp_path / "m3", "--strict"], capsys))
    assert "4 of 7 files cannot be used" in line and "cut.flac: truncated" in line


def test_bad_sources_of_the_converter_give_no_clips(tmp_path):
    audio = tmp_path / "audio"
    write(audio / "good.wav", synth_clip(2.5, 0, 44100), 44100)
    truncate(write(audio / "cut.flac", synth_clip(6.0, 1, 44100), 44100))
    write(audio / "blip.wav", synth_clip(0.3, 2, 22050), 22050)
    (audio / "notes.wav").write_text("no audio here")
    summary = build_manifests(audio, tmp_path / "m", valid_percent=0.0, convert_dir=tmp_path / "flac",
                              segment_seconds=1.0)
    assert summary.skipped == {"truncated": 1, "shorter than min_seconds": 1, "not audio": 1}
    assert sorted(p.name for p in (tmp_path / "flac").rglob("*")) == ["good_0000.flac", "good_0001.flac"]
    whole = build_manifests(audio, tmp_path / "w", valid_percent=0.0, convert_dir=tmp_path / "whole")
    assert whole.skipped == summary.skipped and sorted(p.name for p in (tmp_path / "whole").rglob("*")) == ["good.flac"]


# --- NaN/Inf samples and files that lie about their length (#20) ----------------------------------------------


def nan_wav(path: Path, seconds: float = 2.0, seed: int = 0, bad: float = np.nan) -> Path:
    """A float WAV of music with 100 NaN (or ``bad``) samples at 1 s: its header is like any other's."""
    audio = synth_clip(seconds, seed)
    audio[SAMPLE_RATE: SAMPLE_RATE + 100] = bad
    return write(path, audio, subtype="FLOAT")


def cut_mp3(path: Path, seconds: float = 3.0, seed: int = 0) -> Path:
    """A 16 kHz mp3 cut to half its bytes: its Xing header still declares every sample; fewer decode."""
    return truncate(write(path, synth_clip(seconds, seed), format="MP3"))


def liars(audio: Path) -> dict:
    """Three good float WAVs and four files whose headers look fine: {name: (what the scan says, bad-row kind)}."""
    for i in range(3):
        write(audio / f"good{i}.wav", synth_clip(1.5, i), subtype="FLOAT")
    nan_wav(audio / "nan.wav")
    nan_wav(audio / "inf.wav", bad=np.inf)
    truncate(write(audio / "cut.wav", synth_clip(3.0, 5)))  # data chunk declares 48000 samples, holds 23989
    cut_mp3(audio / "lying.mp3")
    return {"nan.wav": ("holds 100 non-finite samples (NaN/Inf), the first at sample 16000 (1.000 s)", "non-finite"),
            "inf.wav": ("holds 100 non-finite samples (NaN/Inf), the first at sample 16000 (1.000 s)", "non-finite"),
            "cut.wav": ("truncated: holds 23989 of the 48000 samples its WAV header declares", "truncated"),
            "lying.mp3": ("truncated: decodes to ", "truncated")}


def test_bad_nan_samples_and_lying_lengths_are_skipped_by_the_scan_and_the_converter(tmp_path, capsys):
    audio = tmp_path / "audio"
    said = liars(audio)
    code, err = run_cli([audio, "--dest", tmp_path / "m", "--valid-percent", 0, "--jobs", 2], capsys)
    assert code == 0 and read_manifest(tmp_path / "m" / "train.tsv").relpaths == ["good0.wav", "good1.wav",
                                                                                  "good2.wav"]
    for name, (words, _) in said.items():  # one line each, naming the file, what is wrong and a fix
        lines = [line for line in err if f"skipped: {audio / name}: {words}" in line]
        assert len(lines) == 1, (name, err)
        assert ("repair or replace it" if name.endswith("f.wav") or name == "nan.wav" else "re-encode") in lines[0]
    assert any("skipped (non-finite samples): 2 files" in line for line in err)
    assert any("skipped (truncated): 2 files" in line for line in err)
    line = one_error_line(*run_cli([audio, "--dest", tmp_path / "m2", "--strict"], capsys))
    assert "4 of 7 files cannot be used" in line and f"{audio / 'cut.wav'}: truncated" in line

    # the converter: no clip of any of them (it used to pad the cut mp3 with repeats of its last decoded block)
    code, err = run_cli([audio, "--dest", tmp_path / "c", "--valid-percent", 0, "--convert-dir", tmp_path / "flac",
                         "--segment-seconds", 1], capsys)
    assert code == 0 and {p.name.split("_")[0] for p in (tmp_path / "flac").glob("*.flac")} == {"good0", "good1",
                                                                                                   "good2"}
    for name, (words, _) in said.items():
        assert any(f"skipped: {audio / name}: {words}" in line for line in err), (name, err)
    assert not [p for p in (tmp_path / "flac").rglob(".*")]  # no temporaries left


def test_bad_nan_samples_and_lying_lengths_are_bad_rows_of_the_audit_and_stop_the_preflight(tmp_path, capsys):
    audio = tmp_path / "audio"
    said = liars(audio)
    rows = {p.name: (sf.info(p).frames, None) for p in sorted(audio.iterdir())}  # as an older scan listed them
    tsv = write_tsv(tmp_path / "m" / "train.tsv", audio, rows)
    # headers only (no audit yet): float rows are decoded, a cut WAV is seen from its header; a cut mp3 is not
    with pytest.raises(DataError) as err:
        preflight_manifest(tsv)
    message = str(err.value)
    assert "3 of 7 rows cannot be trained on (2 non-finite, 1 truncated; from file headers)" in message
    assert f"{audio / 'cut.wav'}: {said['cut.wav'][0]}" in message and f"{audio / 'inf.wav'}: holds 100" in message
    assert "lying.mp3" not in message

    code, err = run_cli(["audit", tmp_path / "m"], capsys)
    assert "4 bad rows" in one_error_line(code, err)
    bad = [r.split("\t") for r in (tmp_path / "m" / "train.bad.tsv").read_text().splitlines()[1:]]
    assert {r[1]: r[3] for r in bad} == {name: kind for name, (_, kind) in said.items()}
    for name, (words, kind) in said.items():
        lines = [w for w in err if f"{audio / name}: {words}" in w]
        assert len(lines) == 1 and "train.tsv:" in lines[0] and AUDIT_FIX in lines[0], (name, err)
        assert ("repair or replace the file" if kind == "non-finite" else "re-encode") in lines[0]
    with pytest.raises(DataError, match=r"4 of 7 rows .*from audit train.audit.json"):  # the audit's verdict
        preflight_manifest(tsv)
    run_cli(["audit", tmp_path / "m", "--write-clean"], capsys)
    assert read_manifest(tmp_path / "m" / "train.clean.tsv").relpaths == ["good0.wav", "good1.wav", "good2.wav"]
    assert len(preflight_manifest(tmp_path / "m" / "train.clean.tsv")) == 3


def test_bad_wav_length_check_spares_streamed_wavs_and_chunks_after_the_data(tmp_path):
    """No false alarm: a WAV written to a pipe (data size 0xFFFFFFFF) and one with a LIST chunk after its data."""
    streamed = write(tmp_path / "streamed.wav", synth_clip(1.0, 0))
    data = bytearray(streamed.read_bytes())
    at = data.find(b"data")
    data[4:8] = data[at + 4: at + 8] = b"\xff\xff\xff\xff"
    streamed.write_bytes(bytes(data))
    tail = write(tmp_path / "tail.wav", synth_clip(1.0, 1))
    data = bytearray(tail.read_bytes()) + b"LIST\x0c\x00\x00\x00INFOISFT\x00\x00\x00\x00"
    data[4:8] = (len(data) - 8).to_bytes(4, "little")
    tail.write_bytes(bytes(data))
    for path in (streamed, tail):
        assert sf.info(path).frames == 16000
        tsv = write_tsv(tmp_path / path.stem / "train.tsv", tmp_path, {path.name: (16000, None)})
        assert len(preflight_manifest(tsv)) == 1 and audit_manifest(tsv).bad == []


@pytest.mark.parametrize("read", ["probe", "training", "converter"])
def test_bad_every_reader_refuses_nan_samples_and_lying_lengths_naming_the_file(tmp_path, read):
    from music_ssl.data.audio import read_audio, read_audio_blocks, read_training_audio
    from music_ssl.data.errors import AudioError

    audio = tmp_path / "audio"
    said = liars(audio)
    readers = {"probe": lambda p: read_audio(p, 22050), "training": lambda p: read_training_audio(p, sf.info(p).frames),
               "converter": lambda p: list(read_audio_blocks(p, SAMPLE_RATE, block_seconds=0.5))}
    for name, (words, kind) in said.items():
        with pytest.raises(AudioError) as err:
            readers[read](audio / name)
        assert err.value.kind == kind and str(err.value).startswith(f"{audio / name}: {words}"), str(err.value)
    with pytest.raises(AudioError, match=r"lying\.mp3: truncated: decodes to \d+ of the 16000 samples"):
        read_audio(audio / "lying.mp3", offset=2.0, duration=1.0)  # a window past what decodes
    assert readers[read](audio / "good0.wav") is not None


# --- fault injection: the converter killed mid-run -------------------------------------------------------------


def convert(audio: Path, dest: Path, flac: Path) -> None:
    build_manifests(audio, dest, valid_percent=0.25, seed=3, convert_dir=flac, segment_seconds=2.0)


def tree(folder: Path) -> dict:
    """{relpath: bytes} of every file under ``folder`` (hidden temporaries included)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def manifest_rows(dest: Path) -> dict:
    return {split: (dest / f"{split}.tsv").read_text().splitlines()[1:] for split in ("train", "valid")}


def test_fault_converter_killed_at_a_random_point_reruns_to_the_uninterrupted_output(tmp_path):
    """The converter runs in a forked child (a separate process, without a second interpreter start-up) that is
    SIGKILLed after a seeded random delay once conversion has started; a rerun must give the reference output."""
    audio = tmp_path / "audio"
    for i in range(16):
        write(audio / f"d{i % 3}" / f"track{i:02d}.wav", np.stack([synth_clip(7.0, i, 44100)] * 2, 1), 44100)
    convert(audio, tmp_path / "ref_m", tmp_path / "ref_flac")
    rng, fork = random.Random(12), multiprocessing.get_context("fork")
    killed = None
    for attempt in range(4):  # a kill that lands after the run finished proves nothing: draw again
        flac, dest = tmp_path / f"flac{attempt}", tmp_path / f"m{attempt}"
        child = fork.Process(target=convert, args=(audio, dest, flac))
        child.start()
        while not flac.exists() and child.is_alive():  # start the clock when conversion starts
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.8) / (attempt + 1))
        os.kill(child.pid, signal.SIGKILL)
        child.join()
        if child.exitcode == -signal.SIGKILL and not (dest / "train.tsv").exists():
            killed = (flac, dest)
            break
    assert killed, "the converter finished before every kill; make the corpus larger"
    flac, dest = killed
    assert [p for p in flac.rglob(".*.tmp-*")] or len(tree(flac)) < len(tree(tmp_path / "ref_flac"))  # cut short
    convert(audio, dest, flac)
    assert tree(flac) == tree(tmp_path / "ref_flac")  # same clips, byte for byte, and no .tmp- file left
    assert not [p for p in flac.rglob(".*")] and not [p for p in dest.glob(".*")]
    assert manifest_rows(dest) == manifest_rows(tmp_path / "ref_m")
    assert (dest / "train.tsv").read_text().splitlines()[0] == str(flac.resolve())


@pytest.mark.slow
@pytest.mark.parametrize("bad", ["deleted", "nan"])
def test_bad_row_stops_fairseq_hydra_train_before_training_with_the_preflight_line(audio_corpus, tmp_path, bad):
    """The real entry point: fairseq-hydra-train stops at load_dataset, before any update, naming the deleted row
    (or the float row holding NaN samples, which used to die later in fairseq's NaN detector naming no file)."""
    from conftest import REPO, USER_DIR

    gone = audio_corpus.parent / "audio" / "train" / "clip003.wav"
    if bad == "nan":
        nan_wav(gone)  # 2 s, as the manifest says
    else:
        gone.unlink()
    cmd = [sys.executable, "-m", "fairseq_cli.hydra_train", "--config-dir", str(REPO / "config" / "pretrain"),
           "--config-name", "music2vec_tiny", f"task.data={audio_corpus}", f"checkpoint.save_dir={tmp_path / 'ckpt'}",
           f"common.user_dir={USER_DIR}", f"hydra.run.dir={tmp_path / 'hydra'}", "optimization.max_update=2"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0 and not (tmp_path / "ckpt" / "checkpoint_last.pt").exists()
    said = [line for line in proc.stderr.splitlines() if "rows cannot be trained on" in line]
    words = "holds 100 non-finite samples (NaN/Inf)" if bad == "nan" else "file not found"
    assert said and f"{gone}: {words}" in said[-1] and "music-ssl-manifest audit" in said[-1]


# --- names a manifest cannot hold, killed parallel jobs, stale state, empty manifests, folder rows ---------------

UNHOLDABLE = "which a fairseq manifest cannot hold; rename it."


def unholdable_corpus(audio: Path) -> dict:
    """Two good clips plus files whose relpath a manifest cannot hold: {relpath as printed: the reason}."""
    for i in range(2):
        write(audio / f"good{i}.wav", synth_clip(1.5, i))
    write(audio / "tab\tname.wav", synth_clip(1.5, 2))
    write(audio / "line\nbreak.wav", synth_clip(1.5, 3))
    write(audio / "sub\tdir" / "inner.wav", synth_clip(1.5, 4))
    sf.write(os.fsencode(audio) + b"/latin\xe9.wav", synth_clip(1.5, 5), SAMPLE_RATE)  # not UTF-8 (Latin-1 é)
    return {"tab\\tname.wav": "file name holds a TAB", "line\\nbreak.wav": "file name holds a newline",
            "sub\\tdir/inner.wav": "folder name 'sub\\tdir' holds a TAB",
            "latin\\xe9.wav": "file name is not valid UTF-8"}


@pytest.mark.parametrize("convert", [False, True], ids=["scan", "converter"])
def test_bad_file_names_a_manifest_cannot_hold_are_skipped_with_the_reason(tmp_path, capsys, convert):
    audio = tmp_path / "audio"
    bad = unholdable_corpus(audio)
    extra = ["--convert-dir", tmp_path / "flac", "--jobs", "2"] if convert else []
    code, err = run_cli([audio, "--dest", tmp_path / "m", "--valid-percent", "0", *extra], capsys)
    assert code == 0, err
    for name, reason in bad.items():  # one line each, the name escaped (never a raw TAB or newline in the log)
        said = [line for line in err if f"skipped: {audio}/{name}: {reason}, {UNHOLDABLE}" in line]
        assert len(said) == 1, (name, err)
    assert any("skipped (name a manifest cannot hold): 4 files" in line for line in err)
    listed = read_manifest(tmp_path / "m" / "train.tsv")  # readable: only the good files are listed
    assert listed.relpaths == (["good0.flac", "good1.flac"] if convert else ["good0.wav", "good1.wav"])
    if convert:
        assert sorted(p.name for p in (tmp_path / "flac").rglob("*") if p.is_file()) == ["good0.flac", "good1.flac"]
    line = one_error_line(*run_cli([audio, "--dest", tmp_path / "m2", "--strict", *extra], capsys))
    assert "4 of 6 files cannot be used" in line and UNHOLDABLE.split(";")[0] in line


def test_bad_manifest_writer_refuses_a_row_or_root_it_cannot_hold(tmp_path):
    from music_ssl.data.errors import ManifestError
    from music_ssl.data.manifest import write_manifest

    tsv = tmp_path / "m" / "train.tsv"
    for rel, words in (("a\tb.wav", "holds a TAB"), ("d/a\nb.wav", "holds a newline"), ("a\rb.wav", "line break"),
                       ("x\udce9.wav", "is not valid UTF-8"), (" lead.wav", "starts with a space")):
        with pytest.raises(ManifestError) as err:
            write_manifest(tsv, tmp_path, [("ok.wav", 16000), (rel, 16000)])
        message = str(err.value)
        assert message.startswith(f"{tsv}: not written: the row {tmp_path}/") and words in message, message
        assert "which a fairseq manifest cannot hold" in message and message.isprintable() and not tsv.exists()
    with pytest.raises(ManifestError, match=r"the audio root .*a\\nb holds a newline"):
        write_manifest(tsv, tmp_path / "a\nb", [("ok.wav", 16000)])
    assert write_manifest(tsv, tmp_path / "tab\there", [("ok.wav", 16000)]) == 1  # a TAB is fine on the root line
    assert read_manifest(tsv).root == tmp_path / "tab\there"


def proc_stat(pid) -> list:
    """Fields of ``/proc/PID/stat`` after the command name ([state, ppid, …, starttime at 19]); [] when gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return []
    return text[text.rindex(")") + 2:].split()


def child_processes(pid: int) -> dict:
    """{pid: start time} of the processes whose parent is ``pid`` (from /proc: psutil is not a dependency)."""
    found = {}
    for entry in Path("/proc").iterdir():
        fields = proc_stat(entry.name) if entry.name.isdigit() else []
        if fields and int(fields[1]) == pid:
            found[int(entry.name)] = fields[19]
    return found


def still_running(processes: dict) -> list:
    """The pids of ``processes`` ({pid: start time}) still running: not gone, not a zombie, not a reused pid."""
    return [pid for pid, start in processes.items()
            if (fields := proc_stat(pid)) and fields[19] == start and fields[0] not in ("Z", "X")]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the workers in /proc")
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
@pytest.mark.parametrize("stage", ["audit", "converter"])
def test_fault_killed_parallel_jobs_leave_no_worker_running(tmp_path, stage, signum):
    """`music-ssl-manifest audit --jobs 2` and the converter (`--convert-dir --jobs 2`) as a user runs them,
    killed while their two workers work: within seconds no worker may be left (idle workers used to block forever
    on the dead parent's queue, ~390 MB each)."""
    audio = tmp_path / "audio"
    if stage == "audit":  # 240 rows of 30 s FLAC (hard links: cheap to make, decoded each time)
        first, copies = write(audio / "t000.flac", synth_clip(30.0, 0)), 240
    else:  # 80 stereo 44.1 kHz tracks of 10 s to resample and encode
        first, copies = write(audio / "t000.wav", np.stack([synth_clip(10.0, 0, 44100)] * 2, 1), 44100), 80
    for i in range(1, copies):
        os.link(first, first.with_name(f"t{i:03d}{first.suffix}"))
    if stage == "audit":
        write_tsv(tmp_path / "m" / "train.tsv", audio, {p.name: (480000, None) for p in sorted(audio.iterdir())})
        cmd = ["music-ssl-manifest", "audit", tmp_path / "m", "--jobs", "2"]
    else:
        cmd = ["music-ssl-manifest", audio, "--dest", tmp_path / "m", "--convert-dir", tmp_path / "flac", "--jobs", "2"]
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    log, workers = tmp_path / "log.txt", {}
    with open(log, "w") as out:
        proc = subprocess.Popen([str(c) for c in cmd], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while len(workers) < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
            workers = child_processes(proc.pid)
        assert len(workers) >= 2 and proc.poll() is None, f"no pool seen at work:\n{log.read_text()[-3000:]}"
        proc.send_signal(signum)
        code = proc.wait(timeout=30)
        deadline = time.monotonic() + 5
        while still_running(workers) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not still_running(workers), f"workers {still_running(workers)} outlived their parent"
    finally:  # never leave a process of this test behind, whatever failed
        for pid in still_running(workers):
            os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    said = log.read_text()
    if signum == signal.SIGTERM:  # a clean stop: the pool shut down, the exit status of a SIGTERM, no traceback
        assert code == 128 + signal.SIGTERM and "Traceback" not in said and "terminated (signal 15)" in said, said
    else:
        assert code == -signal.SIGKILL



def test_fault_a_worker_sigtermed_before_its_initializer_dies_as_by_default():
    """A pool worker is forked with the parent's SIGTERM handler (``workers.raise_on_sigterm``) and keeps it until
    its initializer runs: a SIGTERM in between (the parent stopping a pool that is starting) must end the worker as
    SIGTERM's default does, not run the parent's handler there (it asserted "can only test a child process" in the
    worker and printed a traceback: seen in CI)."""
    from concurrent.futures import ProcessPoolExecutor

    from music_ssl.core.workers import raise_on_sigterm

    pool = ProcessPoolExecutor(1)
    pool.submit(int).result()  # a live worker in the pool's process table
    previous = raise_on_sigterm(pool)
    assert previous is not None, "the handler is installed (main thread, no SIGTERM handler before)"
    try:
        pid = os.fork()
        if pid == 0:  # the child: a worker between fork and its initializer
            code = 4
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(10)
            except BaseException:  # the parent's handler ran here
                code = 3
            os._exit(code)
        _, status = os.waitpid(pid, 0)
    finally:
        signal.signal(signal.SIGTERM, previous)
        pool.shutdown()
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM, \
        f"exit status {os.waitstatus_to_exitcode(status)} instead of death by SIGTERM"


def sleep_in_a_pool_without_prctl(seconds: float) -> None:
    """A parent whose pool workers cannot arm Linux's parent-death signal (as on macOS): the watchdog must do."""
    from music_ssl.core import workers

    workers.parent_death_signal = lambda signum: False
    for _ in workers.ordered_map(time.sleep, [seconds] * 4, 2):
        pass


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the workers in /proc")
def test_fault_pool_workers_without_the_parent_death_signal_end_by_the_watchdog():
    parent = multiprocessing.get_context("fork").Process(target=sleep_in_a_pool_without_prctl, args=(60.0,))
    parent.start()
    workers, deadline = {}, time.monotonic() + 30
    try:
        while len(workers) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
            workers = child_processes(parent.pid)
        assert len(workers) == 2 and parent.is_alive()
        os.kill(parent.pid, signal.SIGKILL)
        parent.join()
        deadline = time.monotonic() + 5
        while still_running(workers) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not still_running(workers), "the watchdog did not end the workers"
    finally:
        for pid in still_running(workers):
            os.kill(pid, signal.SIGKILL)
        if parent.is_alive():
            parent.kill()
            parent.join()

def test_bad_moved_audio_root_is_one_line_and_write_clean_writes_nothing(tmp_path, capsys):
    audio, m = tmp_path / "audio", tmp_path / "m"
    clips = [write(audio / "songs" / f"c{i}.wav", synth_clip(1.0, i)) for i in range(3)]
    tsv = write_tsv(m / "train.tsv", audio, {f"songs/{p.name}": (16000, None) for p in clips})
    assert run_cli(["audit", m, "--write-clean"], capsys)[0] == 0
    audio.rename(tmp_path / "moved")  # the corpus moved: every row would read as "file not found"
    for extra in ([], ["--write-clean"]):
        code, err = run_cli(["audit", m, *extra], capsys)
        line = one_error_line(code, err)
        assert line == (f"error: {tsv}: its audio root {audio} (the manifest's first line) no longer exists (moved "
                        f"or renamed?), so none of its 3 rows can be read; regenerate the manifest with "
                        f"`music-ssl-manifest AUDIO_DIR --dest DIR`, or edit its first line to the folder's new path.")
        assert not any("file not found" in w for w in err)  # one line, not one per row
    assert len(read_manifest(m / "train.clean.tsv")) == 3  # the earlier clean manifest is left as it was
    with pytest.raises(DataError) as err:
        preflight_manifest(tsv)
    assert str(err.value) == line[len("error: "):]
    from music_ssl.labels import FeatureSettings, dump_features, make_extractor

    with pytest.raises(DataError) as err:  # label prep says the same, not "file not found" for the first row
        dump_features(m, "train", 1, 0, tmp_path / "feat", make_extractor(FeatureSettings(), "cpu"))
    assert str(err.value) == line[len("error: "):]
    (audio / "songs").mkdir(parents=True)  # the root is back, its files are not (a sub-folder moved)
    line = one_error_line(*run_cli(["audit", m, "--write-clean"], capsys))
    assert f"{tsv}: none of its 3 rows' files exists under its audio root {audio}" in line and "first line" in line
    with pytest.raises(DataError, match="none of its 3 rows' files exists under its audio root"):
        preflight_manifest(tsv)
    tsv.write_text(tsv.read_text().replace(str(audio), str(tmp_path / "moved"), 1))  # the fix the line gives
    assert run_cli(["audit", m, "--write-clean"], capsys)[0] == 0 and len(preflight_manifest(tsv)) == 3


def test_bad_write_clean_never_writes_an_empty_clean_manifest(tmp_path, capsys):
    audio, m = tmp_path / "audio", tmp_path / "m"
    for name in ("a.wav", "b.wav"):
        write(audio / name, synth_clip(1.0, 0))
    tsv = write_tsv(m / "train.tsv", audio, {"a.wav": (16000, None), "b.wav": (16000, None)})
    assert run_cli(["audit", m, "--write-clean"], capsys)[0] == 0 and len(read_manifest(m / "train.clean.tsv")) == 2
    for name in ("a.wav", "b.wav"):  # every row goes bad
        write(audio / name, np.zeros((16000, 2), np.float32))
    code, err = run_cli(["audit", m, "--write-clean"], capsys)
    line = one_error_line(code, err)
    assert line.startswith(f"error: {tsv}: all 2 rows are bad (2 channels;")
    assert "no train.clean.tsv was written" in line
    assert len([w for w in err if "has 2 channels, expected mono" in w]) == 2  # each row still on its line
    assert not (m / "train.clean.tsv").exists() and not (m / "train.clean.audit.json").exists()  # stale one gone


def test_bad_exploratory_min_seconds_audit_does_not_block_the_preflight(tmp_path, capsys):
    audio, m = tmp_path / "audio", tmp_path / "m"
    rows = {f"c{i}.wav": (48000, None) for i in range(3)}
    for i, name in enumerate(rows):
        write(audio / name, synth_clip(3.0, i))
    write(audio / "tiny.wav", synth_clip(0.02, 9))  # 320 samples: under the receptive field
    tsv = write_tsv(m / "train.tsv", audio, {**rows, "tiny.wav": (320, None)})
    code, err = run_cli(["audit", m, "--min-seconds", "5"], capsys)
    assert code == 1 and len([w for w in err if "shorter than the minimum of 80000 samples" in w]) == 4
    assert all("--write-clean` (with this audit's --min-seconds) writes" in w for w in err if "80000 samples" in w)
    # the pre-flight reuses that fresh audit for what does not depend on its settings: the 3-s rows are fine
    assert len(preflight_manifest(tsv, min_sample_size=RECEPTIVE_FIELD)) == 4  # fairseq drops the tiny row itself
    with pytest.raises(DataError) as err:  # a run that keeps the tiny row: only that row, by the task's own rule
        preflight_manifest(tsv, min_sample_size=0)
    assert "1 of 4 rows cannot be trained on (1 short; from audit train.audit.json)" in str(err.value)
    assert "tiny.wav: 320 samples, shorter than the model's receptive field" in str(err.value)
    code, _ = run_cli(["audit", m, "--write-clean"], capsys)  # the suggested command keeps the 3-s rows
    assert code == 0 and read_manifest(m / "train.clean.tsv").relpaths == list(rows)


def test_bad_scan_never_writes_an_empty_manifest(tmp_path, capsys):
    audio, m = tmp_path / "audio", tmp_path / "m"
    for i in range(3):
        write(audio / f"c{i}.wav", synth_clip(1.5, i))
    assert run_cli([audio, "--dest", m, "--valid-percent", "0.3"], capsys)[0] == 0 and (m / "valid.tsv").exists()
    code, err = run_cli([audio, "--dest", m, "--valid-percent", "0"], capsys)
    assert code == 0 and not (m / "valid.tsv").exists() and len(read_manifest(m / "train.tsv")) == 3
    said = [w for w in err if f"{m / 'valid.tsv'}: not written, no rows (valid_percent=0)" in w]
    assert len(said) == 1 and "earlier run removed" in said[0] and "disable_validation" in said[0]
    assert err[-1].endswith(f"wrote {m}/train.tsv")
    assert run_cli(["audit", m], capsys)[0] == 0  # nothing stale or empty left to trip the audit


def run_kmeans(argv, capsys, monkeypatch):
    """``music-ssl-kmeans`` in-process: (exit code, stderr lines)."""
    from music_ssl.cli import kmeans_labels

    monkeypatch.setattr(sys, "argv", ["music-ssl-kmeans", *map(str, argv)])
    handlers, level = logging.root.handlers[:], logging.root.level
    try:
        kmeans_labels.cli()
        code = 0
    except SystemExit as exit_info:
        code = exit_info.code
    finally:
        logging.root.handlers[:], logging.root.level = handlers, level
    return code, capsys.readouterr().err.splitlines()


@pytest.mark.parametrize("case", ["zero_bytes", "root_only", "folder_row"])
def test_bad_empty_manifest_or_folder_row_is_the_same_line_from_every_tool(tmp_path, capsys, monkeypatch, case):
    audio, m = tmp_path / "audio", tmp_path / "m"
    write(audio / "a.wav", synth_clip(1.0, 0))
    tsv = m / "train.tsv"
    m.mkdir()
    if case == "zero_bytes":
        tsv.write_bytes(b"")
        said = f"{tsv}: empty manifest (0 bytes; the first line must be the audio root folder"
    elif case == "root_only":
        tsv.write_text(f"{audio}\n")
        said = f"{tsv}: empty manifest (only the root line {audio}, no rows); make it with `music-ssl-manifest"
    else:
        (audio / "dir.wav").mkdir()  # a row naming a folder
        write_tsv(tsv, audio, {"a.wav": (16000, None), "dir.wav": (16000, None)})
        said = f"{audio / 'dir.wav'}: is a folder, not an audio file (a manifest row must name a file)"
    code, err = run_cli(["audit", m], capsys)
    line = one_error_line(code, err)
    if case == "folder_row":  # the bad row on its own line (MANIFEST:LINE: FILE: what; fix), then the count
        line = next((w for w in err if said in w), "")
        assert f"{tsv}:3: " in line and "the row names a folder" in line, err
    assert said in line
    with pytest.raises(DataError) as err:
        preflight_manifest(tsv)
    assert said in str(err.value) and "\n" not in str(err.value)
    line = one_error_line(*run_kmeans(["features", m, "train", 1, 0, tmp_path / "feat"], capsys, monkeypatch))
    assert said in line


@pytest.mark.slow
@pytest.mark.parametrize("case", ["min_seconds_audit", "moved_root", "empty_valid", "folder_row"])
def test_bad_manifest_state_through_fairseq_hydra_train(audio_corpus, tmp_path, capsys, case):
    """The pre-flight in the real entry point: a stale exploratory audit does not stop training; a moved corpus,
    an empty manifest and a row naming a folder stop it at load_dataset with their one line."""
    from conftest import REPO, USER_DIR

    audio = audio_corpus.parent / "audio"
    if case == "min_seconds_audit":  # every 2-s row is "short" for this audit; training keeps them (min 0.5 s)
        assert run_cli(["audit", audio_corpus, "--min-seconds", "5"], capsys)[0] == 1
        said = None
    elif case == "moved_root":
        audio.rename(audio.with_name("moved"))
        said = f"its audio root {audio} (the manifest's first line) no longer exists"
    elif case == "empty_valid":
        (audio_corpus / "valid.tsv").write_text(f"{audio}\n")
        said = f"{audio_corpus / 'valid.tsv'}: empty manifest (only the root line"
    else:
        (audio / "train" / "dir.wav").mkdir()
        with open(audio_corpus / "train.tsv", "a") as f:
            f.write("train/dir.wav\t32000\n")
        said = f"{audio / 'train' / 'dir.wav'}: is a folder, not an audio file"
    cmd = [sys.executable, "-m", "fairseq_cli.hydra_train", "--config-dir", str(REPO / "config" / "pretrain"),
           "--config-name", "music2vec_tiny", f"task.data={audio_corpus}", f"checkpoint.save_dir={tmp_path / 'ckpt'}",
           f"common.user_dir={USER_DIR}", f"hydra.run.dir={tmp_path / 'hydra'}", "optimization.max_update=1"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    if said is None:
        assert proc.returncode == 0 and (tmp_path / "ckpt" / "checkpoint_last.pt").exists(), proc.stderr[-3000:]
        return
    assert proc.returncode != 0 and not (tmp_path / "ckpt" / "checkpoint_last.pt").exists()
    assert any(said in line for line in proc.stderr.splitlines()), proc.stderr[-3000:]
