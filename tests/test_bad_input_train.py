"""A training run's expected errors end as one ``error: …`` line (exit 1) through the real commands, in every way
a run is launched: one process (``fairseq-hydra-train`` and ``music-ssl-train``, with and without
``HYDRA_FULL_ERROR``), fairseq's own spawn of one worker per device, submitit's local launcher and torchrun, each
with 2 CPU workers; a bug keeps its traceback (music_ssl/run_errors.py)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import music_ssl  # noqa: F401
from conftest import USER_DIR, free_port, num_updates
from music_ssl.core.errors import DataError
from music_ssl.core.resources import PLUGIN_DIR, PRETRAIN_CONFIG_DIR

CPU_DDP = ("distributed_training.distributed_backend=gloo", "distributed_training.ddp_backend=legacy_ddp")
FAIRSEQ = ["fairseq-hydra-train", "--config-dir", str(PRETRAIN_CONFIG_DIR)]
MUSIC_SSL_TRAIN = [sys.executable, "-m", "music_ssl.cli.train"]  # = music-ssl-train (setup.py's console script)
# fairseq spawns one worker per GPU (torch.multiprocessing.spawn); two "GPUs" here, CPU workers (common.cpu)
SPAWN_TWO = [sys.executable, "-c", "import sys, torch; torch.cuda.device_count = lambda: 2; "
             "from fairseq_cli.hydra_train import cli_main; sys.argv[0] = 'fairseq-hydra-train'; cli_main()",
             "--config-dir", str(PRETRAIN_CONFIG_DIR)]


def train(command: list, cwd: Path, hydra_full_error: bool = False, timeout: float = 600):
    """Run a training command as a user would (this interpreter's bin first on PATH); never raises on failure."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    env.pop("HYDRA_FULL_ERROR", None)
    if hydra_full_error:
        env["HYDRA_FULL_ERROR"] = "1"
    return subprocess.run([str(a) for a in command], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def error_line(stderr: str, *needles: str) -> str:
    """The last line of ``stderr``, which must be the one ``error:`` line holding every needle, with no traceback."""
    lines = stderr.strip().splitlines()
    assert lines and lines[-1].startswith("error: "), stderr[-4000:]
    assert all(n in lines[-1] for n in needles), lines[-1]
    assert "Traceback" not in stderr, stderr[-4000:]
    return lines[-1]


def hubert(data: Path, tmp: Path, *extra: str) -> list:
    """Overrides of a tiny MusicHuBERT run on ``data`` with its labels."""
    return ["--config-name", "music_hubert_tiny", f"task.data={data}", f"task.label_dir={data}",
            f"checkpoint.save_dir={tmp / 'ckpt'}", f"hydra.run.dir={tmp / 'hydra'}", *extra]


def music2vec(data, tmp: Path, *extra: str) -> list:
    return ["--config-name", "music2vec_tiny", f"task.data={data}", f"checkpoint.save_dir={tmp / 'ckpt'}",
            f"hydra.run.dir={tmp / 'hydra'}", *extra]


# ---------------------------------------------------------------- one process

@pytest.mark.parametrize("command,full_error", [(FAIRSEQ, False), (FAIRSEQ, True), (MUSIC_SSL_TRAIN, True)],
                         ids=["fairseq-hydra-train", "fairseq-hydra-train-HYDRA_FULL_ERROR", "music-ssl-train"])
def test_bad_label_rate_ends_the_run_with_one_line(tmp_path, session_corpus, command, full_error):
    user_dir = [f"common.user_dir={USER_DIR}"] if command is FAIRSEQ else []  # music-ssl-train sets it
    proc = train(command + hubert(session_corpus, tmp_path, "task.label_rate=100", *user_dir), tmp_path,
                 hydra_full_error=full_error)
    assert proc.returncode == 1
    error_line(proc.stderr, "valid.km", "align at 50 Hz", "task.label_rate=50")
    assert "Error executing job" not in proc.stderr and not (tmp_path / "ckpt" / "checkpoint_last.pt").exists()


def test_bad_task_data_file_or_missing_folder_names_the_setting(tmp_path, session_corpus):
    tsv = session_corpus / "train.tsv"
    proc = train(FAIRSEQ + music2vec(tsv, tmp_path, f"common.user_dir={USER_DIR}"), tmp_path)
    assert proc.returncode == 1
    error_line(proc.stderr, f"task.data={tsv}: a file, not a folder", f"(task.data={session_corpus}?)")
    proc = train(MUSIC_SSL_TRAIN + music2vec(tmp_path / "nowhere", tmp_path), tmp_path)
    assert proc.returncode == 1
    error_line(proc.stderr, f"task.data={tmp_path / 'nowhere'}: no such folder", "music-ssl-manifest")


def test_bad_label_folder_without_dictionary_names_the_file(tmp_path, session_corpus):
    labels = tmp_path / "km"
    labels.mkdir()
    for split in ("train", "valid"):
        (labels / f"{split}.km").write_bytes((session_corpus / f"{split}.km").read_bytes())
    proc = train(MUSIC_SSL_TRAIN + hubert(session_corpus, tmp_path, f"task.label_dir={labels}", "task.label_rate=50"),
                 tmp_path)
    assert proc.returncode == 1
    error_line(proc.stderr, f"{labels / 'dict.km.txt'}: label dictionary not found", "music-ssl-kmeans all")


def test_bad_missing_user_dir_says_how_to_set_it(tmp_path, session_corpus):
    proc = train(FAIRSEQ + music2vec(session_corpus, tmp_path), tmp_path)
    assert proc.returncode == 1
    error_line(proc.stderr, "common.user_dir is not set", 'common.user_dir="$(music-ssl-config-dir --user-dir)"',
               "music-ssl-train")
    assert "Available argparse tasks" not in proc.stderr


@pytest.mark.slow
def test_bad_corrupt_checkpoint_last_names_it_and_the_way_to_resume(tmp_path, session_corpus):
    """A truncated checkpoint_last.pt stops the resume naming it and checkpoint_best.pt; doing what the line says
    (move it away, copy checkpoint_best.pt over it) resumes."""
    args = music2vec(session_corpus, tmp_path, f"common.user_dir={USER_DIR}")
    assert train(FAIRSEQ + args + ["optimization.max_update=1"], tmp_path).returncode == 0
    last, best = tmp_path / "ckpt" / "checkpoint_last.pt", tmp_path / "ckpt" / "checkpoint_best.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # a save cut short
    proc = train(FAIRSEQ + args + ["optimization.max_update=2"], tmp_path)
    assert proc.returncode == 1
    error_line(proc.stderr, f"{last}: cannot be read as a checkpoint", f"mv {last} {last}.bad",
               f"cp {best} {last}", "checkpoint.restore_file=")
    last.rename(last.with_name("checkpoint_last.pt.bad"))
    last.write_bytes(best.read_bytes())
    assert train(FAIRSEQ + args + ["optimization.max_update=2"], tmp_path).returncode == 0
    assert num_updates(last) == 2


BUG = ("import sys, music_ssl.tasks.music2vec_pretraining as task\n"
       "def load_dataset(self, split, **kwargs):\n"
       "    raise RuntimeError('a deliberate bug in load_dataset')\n"
       "task.Music2VecPretrainingTask.load_dataset = load_dataset\n"
       "from music_ssl.cli.train import cli\n"
       "sys.argv = ['music-ssl-train', *sys.argv[1:]]\n"
       "cli()\n")


def test_fault_a_bug_keeps_its_traceback(tmp_path, session_corpus):
    proc = train([sys.executable, "-c", BUG] + music2vec(session_corpus, tmp_path), tmp_path)
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr and "RuntimeError: a deliberate bug in load_dataset" in proc.stderr
    assert "error: " not in proc.stderr.strip().splitlines()[-1]


# ---------------------------------------------------------------- 2 CPU workers

@pytest.mark.slow
def test_bad_label_rate_with_two_workers_fairseq_spawns_ends_with_one_line(tmp_path, session_corpus):
    proc = train(SPAWN_TWO + hubert(session_corpus, tmp_path, "task.label_rate=100", f"common.user_dir={USER_DIR}",
                                    "distributed_training.distributed_world_size=2", *CPU_DDP), tmp_path)
    assert proc.returncode == 1
    assert "distributed init (rank 1)" in proc.stderr, "two workers were spawned"
    error_line(proc.stderr, "valid.km", "task.label_rate=50")


@pytest.mark.slow
def test_bad_label_rate_with_two_submitit_workers_ends_with_one_line(tmp_path, session_corpus):
    sweep = tmp_path / "sweep"
    proc = train(FAIRSEQ + ["-m"] + hubert(session_corpus, tmp_path, "task.label_rate=100", "+run=local",
                                           f"hydra.sweep.dir={sweep}", f"common.user_dir={USER_DIR}",
                                           f"distributed_training.distributed_port={free_port()}"), tmp_path)
    assert proc.returncode == 1
    error_line(proc.stderr, "valid.km", "task.label_rate=50")
    assert len(list((sweep / "submitit").glob("*_1_log.err"))) == 1, "the second worker ran"


@pytest.mark.slow
def test_bad_task_data_with_two_torchrun_workers_one_line_each_and_in_torchruns_report(tmp_path, session_corpus):
    """Each worker ends with the one line; torchrun's own report (its process, its traceback) names the line as
    the root cause."""
    tsv, logs = session_corpus / "train.tsv", tmp_path / "logs"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
                "--rdzv_backend=c10d", f"--rdzv_endpoint=localhost:{free_port()}", f"--log-dir={logs}",
                "--redirects=2"]  # each worker's stderr into its own file
    proc = train(torchrun + ["-m", "music_ssl.cli.train"] + music2vec(tsv, tmp_path, "+run=torchrun", *CPU_DDP),
                 tmp_path)
    assert proc.returncode == 1
    workers = sorted(logs.rglob("stderr.log"))
    assert len(workers) == 2
    lines = {error_line(w.read_text(), f"task.data={tsv}: a file, not a folder") for w in workers}
    assert len(lines) == 1
    report = proc.stderr.split("Root Cause (first observed failure):", 1)[1]
    assert f"traceback : {lines.pop()}" in report


# ---------------------------------------------------------------- the pieces

def test_bad_dataloader_worker_error_keeps_its_own_line():
    """torch raises a DataLoader worker's exception again with the worker's traceback in the message."""
    from music_ssl.run_errors import error_message

    class Broken(torch.utils.data.Dataset):
        def __len__(self):
            return 1

        def __getitem__(self, i):
            raise DataError("/x/a.wav: not an audio file; fix it")

    with pytest.raises(DataError) as caught:
        next(iter(torch.utils.data.DataLoader(Broken(), num_workers=1)))
    assert "Original Traceback" in str(caught.value)
    assert error_message(caught.value) == "/x/a.wav: not an audio file; fix it"


def test_bad_checkpoint_damage_tells_whole_files_from_cut_ones(tmp_path):
    from music_ssl.run_errors import checkpoint_damage

    whole = tmp_path / "whole.pt"
    torch.save({"model": {"w": torch.ones(1000)}}, whole)
    legacy = tmp_path / "legacy.pt"
    torch.save({"w": torch.ones(3)}, legacy, _use_new_zipfile_serialization=False)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(whole.read_bytes()[:2000])
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    text = tmp_path / "text.pt"
    text.write_text(json.dumps({"not": "a checkpoint"}))
    assert checkpoint_damage(whole) is None and checkpoint_damage(legacy) is None
    assert checkpoint_damage(tmp_path / "missing.pt") is None
    assert checkpoint_damage(empty) == "an empty file"
    assert "cut short" in checkpoint_damage(cut) and "cut short" in checkpoint_damage(text)


def test_music_ssl_train_fills_config_dir_and_user_dir_unless_given():
    from music_ssl.cli.train import train_arguments

    assert train_arguments(["--config-name", "x", "task.data=D"]) == [
        "--config-dir", str(PRETRAIN_CONFIG_DIR), "--config-name", "x", "task.data=D", f"common.user_dir={PLUGIN_DIR}"]
    mine = ["-cd", "/mine", "--config-name", "x", "common.user_dir=/u"]
    assert train_arguments(mine) == mine
    given = ["--config-dir=/mine", "+common.user_dir=/u"]
    assert train_arguments(given) == given
