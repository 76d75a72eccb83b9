"""Full and read-only disks (issue #20, item 6): every writer ends in one ``error:`` line naming the file and the
space needed and free (or "read-only file system") and the fix, and leaves nothing half-written.

The disks are real: a small tmpfs mounted for the test (filled with a ballast file where a test needs it full),
remounted read-only for the read-only cases (``chmod 0555`` does not stop root). Mounting needs root; elsewhere
these tests are skipped, saying why.
"""
import errno
import os
import re
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
import soundfile as sf
import torch

import music_ssl  # noqa: F401  (installs the fairseq overrides)
from conftest import REPO, SAMPLE_RATE, USER_DIR, synth_clip, write_clips, write_manifest
from music_ssl.core.atomic import atomic_path, preallocate, write_text_atomic
from music_ssl.core.errors import DiskError, MusicSSLError
from test_bad_input_labels import cli_error

NO_SPACE = "no space left on device"
READ_ONLY = "read-only file system"


def _mount(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["mount", *args], capture_output=True, text=True)


@contextmanager
def tmpfs(folder: Path, size: str = "1m"):
    """A fresh tmpfs of ``size`` at ``folder`` (skips the test where mounting is not permitted); unmounted after."""
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs (a real full / read-only disk) needs root and mount(8)")
    folder.mkdir(parents=True, exist_ok=True)
    proc = _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder))
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip() or proc.returncode}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def fill(folder: Path, leave: int = 0) -> None:
    """Fill the filesystem of ``folder`` with a ballast file, then give back ``leave`` bytes."""
    ballast = folder / "ballast"
    with open(ballast, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError as err:
            assert err.errno == errno.ENOSPC
    if leave:
        os.truncate(ballast, max(ballast.stat().st_size - leave, 0))


def read_only(folder: Path) -> None:
    """Remount the tmpfs at ``folder`` read-only (skips where that is refused)."""
    proc = _mount("-o", "remount,ro", str(folder))
    if proc.returncode != 0:
        pytest.skip(f"cannot remount a tmpfs read-only here: {proc.stderr.strip() or proc.returncode}")


def written(folder: Path) -> list:
    """Every file under ``folder`` except the ballast: what a failed writer left behind."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name != "ballast")


def cli_env() -> dict:
    return dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", LOGLEVEL="INFO",
                HYDRA_FULL_ERROR="0")


# --- the one writer -----------------------------------------------------------------------------------------


def test_bad_disk_full_or_read_only_atomic_write_is_one_disk_error_and_no_temporary(tmp_path):
    with tmpfs(tmp_path / "disk") as disk:
        with pytest.raises(DiskError) as info:
            write_text_atomic(disk / "out" / "big.txt", "x" * (2 << 20))
        message = str(info.value)
        assert message.startswith(f"{disk / 'out' / 'big.txt'}: {NO_SPACE} (2.0 MiB needed, ") and "\n" not in message
        assert f"free on {disk}" in message and isinstance(info.value, (MusicSSLError, OSError))
        assert info.value.errno == errno.ENOSPC and written(disk) == []

        with pytest.raises(DiskError, match=f"streamed.bin: {NO_SPACE} \\(needs more than the "):
            with atomic_path(disk / "streamed.bin") as tmp, open(tmp, "wb") as f:  # size unknown up front
                for _ in range(64):
                    f.write(b"\1" * 65536)
        assert written(disk) == []

        with pytest.raises(DiskError, match="mapped.npy: no space"):  # a memory map's blocks reserved first
            with atomic_path(disk / "mapped.npy") as tmp:
                tmp.write_bytes(b"")
                os.truncate(tmp, 4 << 20)  # sparse: nothing written yet, the SIGBUS of a full disk would come later
                preallocate(tmp, 4 << 20)
        assert written(disk) == []

        (disk / "kept.txt").write_text("before")
        read_only(disk)
        for target in (disk / "kept.txt", disk / "new" / "folder" / "x.txt"):
            with pytest.raises(DiskError) as info:
                write_text_atomic(target, "after")
            assert str(info.value).startswith(f"{target}: {READ_ONLY} ({disk}); ") and "remount" in str(info.value)
            assert info.value.errno == errno.EROFS
        assert (disk / "kept.txt").read_text() == "before" and written(disk) == ["kept.txt"]


def test_bad_disk_permission_denied_on_the_output_names_the_folder(tmp_path):
    """EACCES (root passes permission bits, so the refusal is raised as the OS would raise it for the temporary)."""
    target = tmp_path / "out" / "x.txt"
    with pytest.raises(DiskError) as info:
        with atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise PermissionError(errno.EACCES, "Permission denied", str(tmp))
    assert str(info.value) == (f"{target}: permission denied (cannot write in {target.parent}); write to another "
                               f"folder (or give this user write permission there).")
    assert info.value.errno == errno.EACCES and written(tmp_path / "out") == []


def test_bad_disk_error_of_an_input_is_not_blamed_on_the_output(tmp_path):
    """A permission error about another file (an input the block reads) stays what it is."""
    with pytest.raises(PermissionError):
        with atomic_path(tmp_path / "out" / "x.txt"):
            raise PermissionError(errno.EACCES, "Permission denied", "/somewhere/else/input.wav")
    with pytest.raises(FileNotFoundError):
        with atomic_path(tmp_path / "out" / "x.txt"):
            raise FileNotFoundError(errno.ENOENT, "No such file", str(tmp_path / "out" / "input.wav"))
    assert written(tmp_path / "out") == []


# --- k-means label prep: features on a full disk were a SIGBUS (rc 135, no message) -----------------------------


@pytest.mark.parametrize("free_space_check", [True, False], ids=["checked_up_front", "preallocated"])
def test_bad_disk_full_kmeans_all_is_one_line_not_sigbus(tmp_path, free_space_check):
    """``music-ssl-kmeans all`` whose feature shard (1.2 MiB) cannot fit a 1 MiB disk: exit 1 and one line naming
    the shard and the bytes needed, no half shard. Without the up-front free-space check (patched out), the
    preallocation of the memory map fails with ENOSPC where the map's first write used to be a SIGBUS."""
    audio, data = tmp_path / "audio", tmp_path / "data"
    data.mkdir()
    write_manifest(data / "train.tsv", audio, write_clips(audio, 8, 10.0))  # 7984 MFCC frames x 39 float32
    script = ("import sys, music_ssl.core.atomic as a\n"
              "a.require_space = lambda *args, **kwargs: None\n" if not free_space_check else "import sys\n")
    script += "from music_ssl.cli.kmeans_labels import cli\nsys.argv[0] = 'music-ssl-kmeans'\ncli()\n"
    with tmpfs(tmp_path / "disk") as disk:
        out = disk / "labels"
        proc = subprocess.run([sys.executable, "-c", script, "all", str(data), str(out), "--n-clusters", "8",
                               "--splits", "train", "--device", "cpu"], cwd=tmp_path, env=cli_env(),
                              capture_output=True, text=True, timeout=300)
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
        assert proc.returncode == 1, (proc.returncode, proc.stderr[-3000:])  # not 135 / -SIGBUS
        assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
        assert errors[0].startswith(f"error: {out / 'feat' / 'train_0_1.npy'}: {NO_SPACE} (1.2 MiB needed, ")
        assert f"free on {disk}" in errors[0] and "FEAT_DIR" in errors[0]
        assert written(disk) == []  # no half shard, no temporary, no marker


def test_bad_disk_read_only_kmeans_features_is_one_line(tmp_path, monkeypatch, capsys):
    from music_ssl.cli.kmeans_labels import cli

    audio, data = tmp_path / "audio", tmp_path / "data"
    data.mkdir()
    write_manifest(data / "train.tsv", audio, write_clips(audio, 2, 1.0))
    with tmpfs(tmp_path / "disk") as disk:
        read_only(disk)
        line = cli_error(monkeypatch, capsys, cli, "music-ssl-kmeans", "features", data, "train", 1, 0, disk / "feat",
                         "--device", "cpu")
        assert line.startswith(f"error: {disk / 'feat' / 'train_0_1.npy'}: {READ_ONLY} ({disk}); ")


# --- export, probe, manifest --------------------------------------------------------------------------------


def test_bad_disk_full_or_read_only_export_hf_is_one_line(tmp_path, monkeypatch, capsys):
    from music_ssl.cli.export_hf import cli
    from test_export_hf import stock_hubert

    ckpt = stock_hubert(tmp_path)
    with tmpfs(tmp_path / "disk") as disk:
        fill(disk, leave=64 << 10)  # 64 KiB free: the tiny model's weights do not fit
        line = cli_error(monkeypatch, capsys, cli, "music-ssl-export-hf", ckpt, disk / "hf")
        assert re.match(rf"error: {re.escape(str(disk / 'hf'))}: {NO_SPACE} \([\d.]+ KiB needed, 64\.0 KiB free on "
                        rf"{re.escape(str(disk))}\); free space on .* or choose an OUT_DIR on another disk\.$", line)
        assert written(disk) == [] and not list(disk.glob(".*"))

        (disk / "ballast").unlink()
        (disk / "hf").mkdir()
        (disk / "hf" / "notes.txt").write_text("the user's notes")
        read_only(disk)
        line = cli_error(monkeypatch, capsys, cli, "music-ssl-export-hf", ckpt, disk / "hf")
        assert line.startswith(f"error: {disk / 'hf'}: {READ_ONLY} ({disk}); choose an OUT_DIR on another disk")
        assert written(disk) == ["hf/notes.txt"]


def test_bad_disk_full_stream_export_weights_is_one_line(tmp_path, monkeypatch):
    """A disk that fills while safetensors writes (its error is ``SafetensorError: … (os error 28)``)."""
    import music_ssl.export.hf as hf
    from test_export_hf import stock_hubert

    ckpt = stock_hubert(tmp_path)
    monkeypatch.setattr(hf, "require_space", lambda *args, **kwargs: None)  # as if another writer filled it later
    with tmpfs(tmp_path / "disk") as disk:
        fill(disk, leave=64 << 10)
        with pytest.raises(DiskError, match=f"hf: {NO_SPACE} \\([\\d.]+ KiB needed, 64.0 KiB free"):
            hf.export_checkpoint(ckpt, disk / "hf")
        assert written(disk) == [] and not list(disk.glob(".*"))


def probe_task(tmp_path: Path) -> tuple:
    """(checkpoint, task csv) of a tiny probe: 8 clips of 4 s in three splits."""
    from test_export_hf import stock_hubert

    clips, splits = [], ["train"] * 4 + ["valid"] * 2 + ["test"] * 2
    for i in range(len(splits)):
        clips.append(tmp_path / "audio" / f"c{i:02d}.wav")
        clips[-1].parent.mkdir(exist_ok=True)
        sf.write(clips[-1], synth_clip(4.0, seed=i), SAMPLE_RATE)
    csv = tmp_path / "task.csv"
    csv.write_text("path,label,split\n" + "".join(f"{c},{i % 2},{s}\n" for i, (c, s) in enumerate(zip(clips, splits))))
    return stock_hubert(tmp_path), csv


def probe_args(tmp_path: Path, ckpt: Path, csv: Path, out: Path, cache) -> list:
    return ["music-ssl-probe", "--config-name", "demo", f"data_root={tmp_path}", f"out_dir={out}",
            f"cache_dir={cache}", f"tasks=[{{name:csv,path:{csv},type:multiclass}}]", "protocol.seeds=[0]",
            "protocol.train.max_epochs=1", "device=cpu", "progress=false", "source.kind=checkpoint",
            f"source.path={ckpt}"]


def test_bad_disk_read_only_probe_out_dir_or_full_cache_is_one_line(tmp_path, monkeypatch, capsys):
    from music_ssl.cli.probe import cli

    ckpt, csv = probe_task(tmp_path)
    with tmpfs(tmp_path / "disk") as disk:
        (disk / "results").mkdir()
        read_only(disk)
        line = cli_error(monkeypatch, capsys, cli, *probe_args(tmp_path, ckpt, csv, disk / "results", "null"))
        assert line.startswith(f"error: {disk / 'results'}: {READ_ONLY} ({disk}); set out_dir to a folder")
    with tmpfs(tmp_path / "cache") as cache:
        fill(cache)
        line = cli_error(monkeypatch, capsys, cli, *probe_args(tmp_path, ckpt, csv, tmp_path / "out", cache))
        assert re.match(rf"error: {re.escape(str(cache))}/\w\w/\w+\.npz: {NO_SPACE} \([\d.]+ K?i?B needed, 0 B "
                        rf"free on {re.escape(str(cache))}\); .* set cache_dir to a folder on another disk \(or "
                        rf"cache_dir=null: no cache\)\.$", line)
        assert written(cache) == []


def test_bad_disk_full_or_read_only_manifest_dest_is_one_line(tmp_path, monkeypatch, capsys):
    from music_ssl.cli.manifest import cli

    write_clips(tmp_path / "audio", 4, 1.0)
    with tmpfs(tmp_path / "disk") as disk:
        fill(disk)
        line = cli_error(monkeypatch, capsys, cli, "music-ssl-manifest", tmp_path / "audio", "--dest", disk / "m",
                         "--valid-percent", "0.25")
        assert re.match(rf"error: {re.escape(str(disk))}/m/\w+\.tsv: {NO_SPACE} \(\d+ B needed, 0 B free on ", line)

        line = cli_error(monkeypatch, capsys, cli, "music-ssl-manifest", tmp_path / "audio", "--dest",
                         tmp_path / "m", "--convert-dir", disk / "flac")  # libsndfile's "System error" on a full disk
        assert re.match(rf"error: {re.escape(str(disk))}/flac/clip00\d\.flac: {NO_SPACE} \(", line), line
        assert written(disk) == [] and not (tmp_path / "m").exists()

        (disk / "ballast").unlink()
        read_only(disk)
        line = cli_error(monkeypatch, capsys, cli, "music-ssl-manifest", tmp_path / "audio", "--dest", disk / "m")
        assert re.match(rf"error: {re.escape(str(disk))}/m/\w+\.tsv: {READ_ONLY} \({re.escape(str(disk))}\); ", line)
        assert written(disk) == []


# --- training: fairseq's checkpoint save ----------------------------------------------------------------------


def test_bad_disk_full_or_read_only_checkpoint_save_is_one_disk_error_and_no_tmp(tmp_path):
    """fairseq's own save path (``Trainer.save_checkpoint`` → ``checkpoint_utils.torch_persistent_save``, then the
    copy to ``checkpoint_last.pt``) with a real fairseq checkpoint state."""
    from fairseq import checkpoint_utils
    from fairseq.file_io import PathManager
    from test_export_hf import stock_hubert

    state = torch.load(stock_hubert(tmp_path), weights_only=True, map_location="cpu")
    with tmpfs(tmp_path / "disk") as disk:
        fill(disk, leave=64 << 10)
        best = disk / "ckpt" / "checkpoint_best.pt"
        best.parent.mkdir()
        with pytest.raises(DiskError) as info:
            checkpoint_utils.torch_persistent_save(state, str(best))
        assert re.match(rf"{re.escape(str(best))}: {NO_SPACE} \([\d.]+ [KM]iB needed, [\d.]+ KiB free on "
                        rf"{re.escape(str(disk))}\); .* set checkpoint.save_dir to a folder on another disk\.$",
                        str(info.value))
        assert written(disk) == []  # no checkpoint_best.pt.tmp

        (disk / "ballast").unlink()
        checkpoint_utils.torch_persistent_save(state, str(best))
        fill(disk, leave=4 << 10)
        last = best.with_name("checkpoint_last.pt")
        with pytest.raises(DiskError, match=f"checkpoint_last.pt: {NO_SPACE} "):
            PathManager.copy(str(best), str(last), overwrite=True)
        assert written(disk) == ["ckpt/checkpoint_best.pt"]

        (disk / "ballast").unlink()
        read_only(disk)
        with pytest.raises(DiskError, match=f"checkpoint_best.pt: {READ_ONLY} "):
            checkpoint_utils.torch_persistent_save(state, str(best))
        with pytest.raises(DiskError, match=f"ckpt: {READ_ONLY} "):
            checkpoint_utils.verify_checkpoint_directory(str(best.parent))
    torch.load(tmp_path / "hubert.pt", weights_only=True)  # (the source is untouched)


def train_command(data: Path, save: Path, hydra_dir: Path) -> list:
    return ["fairseq-hydra-train", "--config-dir", str(REPO / "config" / "pretrain"), "--config-name",
            "music_hubert_tiny", f"task.data={data}", f"task.label_dir={data}", "task.label_rate=50",
            f"common.user_dir={USER_DIR}", f"checkpoint.save_dir={save}", "optimization.max_update=1",
            f"hydra.run.dir={hydra_dir}"]


def error_line(proc: subprocess.CompletedProcess) -> str:
    """The one ``error:`` line a training run ended with (exit 1, no traceback: ``music_ssl/run_errors.py``)."""
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert proc.returncode == 1 and len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return errors[0]


@pytest.mark.slow
def test_bad_disk_full_or_read_only_fairseq_hydra_train_names_the_checkpoint_and_leaves_no_tmp(tmp_path,
                                                                                            session_corpus):
    """A 1-update tiny MusicHuBERT run whose ``checkpoint.save_dir`` is on a full disk: the first checkpoint save
    fails naming the checkpoint and the space, and no ``checkpoint_best.pt.tmp`` is left; on a read-only disk the
    run stops at fairseq's start-up check of the folder, naming it."""
    with tmpfs(tmp_path / "disk") as disk:
        fill(disk, leave=64 << 10)  # the tiny model's checkpoint is a few MiB
        save = disk / "ckpt"
        proc = subprocess.run(train_command(session_corpus, save, tmp_path / "hydra_full"), cwd=tmp_path,
                              env=cli_env(), capture_output=True, text=True, timeout=600)
        assert re.match(rf"error: {re.escape(str(save))}/checkpoint_best\.pt: {NO_SPACE} \([\d.]+ MiB needed, "
                        rf"64\.0 KiB free on {re.escape(str(disk))}\); .* set checkpoint.save_dir", error_line(proc))
        assert "retrying" not in proc.stderr and written(disk) == [], written(disk)  # no .pt.tmp, no half file

        (disk / "ballast").unlink()
        read_only(disk)
        proc = subprocess.run(train_command(session_corpus, disk / "new", tmp_path / "hydra_ro"), cwd=tmp_path,
                              env=cli_env(), capture_output=True, text=True, timeout=600)
        assert error_line(proc).startswith(f"error: {disk / 'new'}: {READ_ONLY} ({disk}); set checkpoint.save_dir")
