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
    with pytest.raises(DataError, match=r"from file headers\): line 3: .*good1.wav: has \d+ samples"):
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
    files = [write(tmp_path / f"{sub}.wav", x, subtype=sub) for sub in ("PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE")]
    files += [write(tmp_path / f"{sub}.flac", x, subtype=sub) for sub in ("PCM_16", "PCM_24")]
    files += [write(tmp_path / "st44.wav", np.stack([x, x], 1), 44100), write(tmp_path / "st.flac", np.stack([x, x], 1))]
    files += [truncate(write(tmp_path / "cut.wav", x), 0.7), write(tmp_path / "u8.wav", x, subtype="PCM_U8")]
    for path in files:
        info = sf.info(path)
        assert header_info(path) == (info.samplerate, info.channels, info.frames), path


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
def test_bad_row_stops_fairseq_hydra_train_before_training_with_the_preflight_line(audio_corpus, tmp_path):
    """The real entry point: fairseq-hydra-train stops at load_dataset, before any update, naming the deleted row."""
    from conftest import REPO, USER_DIR

    gone = audio_corpus.parent / "audio" / "train" / "clip003.wav"
    gone.unlink()
    cmd = [sys.executable, "-m", "fairseq_cli.hydra_train", "--config-dir", str(REPO / "config" / "pretrain"),
           "--config-name", "music2vec_tiny", f"task.data={audio_corpus}", f"checkpoint.save_dir={tmp_path / 'ckpt'}",
           f"common.user_dir={USER_DIR}", f"hydra.run.dir={tmp_path / 'hydra'}", "optimization.max_update=2"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0 and not (tmp_path / "ckpt" / "checkpoint_last.pt").exists()
    said = [line for line in proc.stderr.splitlines() if "rows cannot be trained on" in line]
    assert said and f"{gone}: file not found" in said[-1] and "music-ssl-manifest audit" in said[-1]
