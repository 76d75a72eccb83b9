"""Fault injection for pretraining: SIGKILL at a seeded random point, then rerun.

A killed ``fairseq-hydra-train`` resumes from ``checkpoint_last.pt`` with the update count and the learning-rate
schedule continuing, every checkpoint file on disk is whole at any moment, and no temp file outlives the rerun.
"""
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import OrderedDict
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import music_ssl  # noqa: F401  (allows fairseq.Dictionary in weights_only loads; installs the atomic copy)
from conftest import REPO, USER_DIR, num_updates

SEED = 12  # the kill point is drawn from this seed: rerunning the test replays the same fault


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


COPY_LOOP = """
import sys
import music_ssl  # installs the atomic PathManager.copy
from fairseq.file_io import PathManager
src = sys.argv[1:3]
dst = sys.argv[3]
for i in range(10_000):
    assert PathManager.copy(src[i % 2], dst, overwrite=True)
"""


def test_fault_checkpoint_copy_never_leaves_half_a_file(tmp_path):
    """fairseq copies checkpoint_best.pt to checkpoint_last.pt; a SIGKILL during that copy (music_ssl makes it
    tmp + rename) leaves the previous or the new file, whole, never a truncated one."""
    rng = random.Random(SEED)
    sources = [tmp_path / "a.pt", tmp_path / "b.pt"]
    for i, src in enumerate(sources):
        src.write_bytes(bytes([i + 1]) * (48 << 20))  # 48 MiB: a copy takes long enough to be caught mid-way
    dst, tmp = tmp_path / "checkpoint_last.pt", tmp_path / "checkpoint_last.pt.tmp"
    proc = subprocess.Popen([sys.executable, "-c", COPY_LOOP, *map(str, sources), str(dst)], cwd=tmp_path)
    try:
        for _ in range(rng.randint(1, 3)):  # a seeded number of copies in, mid-copy
            deadline = time.monotonic() + 120
            while not (tmp.exists() and tmp.stat().st_size > 0):
                assert proc.poll() is None and time.monotonic() < deadline, "the copy loop never wrote its temp file"
                time.sleep(0.0005)
            while tmp.exists() and time.monotonic() < deadline:
                time.sleep(0.0005)
        while not (tmp.exists() and tmp.stat().st_size > 0):
            assert proc.poll() is None
            time.sleep(0.0005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL and tmp.exists(), "killed mid-copy"
    assert digest(dst) in {digest(src) for src in sources}, "checkpoint_last.pt is one whole checkpoint"


class RecordingTrainer:
    """What fairseq's ``load_checkpoint`` asks of a trainer (no model): records the save folder it was asked to
    restore from, as it was at that moment."""

    checkpoint_suffix = ""

    def __init__(self, save_dir: Path, writes_checkpoints: bool = True):
        self.save_dir, self.should_save_checkpoint_on_current_rank = save_dir, writes_checkpoints
        self.seen = None

    def load_checkpoint(self, path, *args, **kwargs):
        self.seen = sorted(str(p.relative_to(self.save_dir)) for p in self.save_dir.rglob("*"))
        return None  # first launch: no checkpoint_last.pt

    def get_train_iterator(self, epoch, **kwargs):
        return SimpleNamespace(epoch=epoch)

    def lr_step(self, epoch):
        pass


def test_stale_checkpoint_tmp_of_a_killed_save_is_removed_when_the_next_run_loads(tmp_path, caplog):
    """fairseq_patches item 2: the ``checkpoint_*.pt.tmp`` a killed save left is gone before fairseq's
    ``load_checkpoint`` runs (as ``fairseq_cli.train`` calls it), on the writing rank only; other files stay."""
    from fairseq import checkpoint_utils
    from fairseq.dataclass.configs import CheckpointConfig
    from omegaconf import OmegaConf

    save = tmp_path / "ckpt"
    stale = ["checkpoint_3.pt.tmp", "checkpoint_last.pt.tmp"]  # fairseq's torch_persistent_save suffix
    kept = ["checkpoint_2.pt", "notes.tmp", "checkpoint_3.pt.tmp.bak", ".checkpoint_4.tmp-99.pt",
            "old/checkpoint_1.pt.tmp"]  # whole checkpoints, other files, and a sub-folder are not fairseq's temps
    for name in stale + kept:
        (save / name).parent.mkdir(parents=True, exist_ok=True)
        (save / name).write_bytes(b"x")
    cfg = OmegaConf.structured(CheckpointConfig(save_dir=str(save)))

    other_rank = RecordingTrainer(save, writes_checkpoints=False)
    checkpoint_utils.load_checkpoint(cfg, other_rank, disable_iterator_cache=False)
    assert all((save / name).exists() for name in stale + kept), "a rank that writes no checkpoint deletes nothing"

    trainer = RecordingTrainer(save)
    with caplog.at_level("WARNING"):
        _, epoch_itr = checkpoint_utils.load_checkpoint(cfg, trainer, disable_iterator_cache=False)
    assert epoch_itr.epoch == 1 and trainer.seen == sorted(kept + ["old"]), "removed before fairseq loads"
    assert sorted(p.name for p in save.glob("*.pt.tmp")) == [] and all((save / name).exists() for name in kept)
    assert sum("a checkpoint write interrupted in an earlier run" in r.getMessage() for r in caplog.records) == 2


class RaisesSignalWhenSaved:
    """Raises ``signum`` in this process when pickled, i.e. inside ``torch.save`` while ``X.pt.tmp`` is open."""

    def __init__(self, signum: int):
        self.signum = signum

    def __reduce__(self):
        signal.raise_signal(self.signum)
        return OrderedDict, ()  # stored as an empty OrderedDict (weights_only loads it)


def test_a_signal_during_a_checkpoint_save_is_handled_once_the_save_is_done(tmp_path, session_corpus, caplog):
    """fairseq_patches item 8: USR2 (Slurm's preemption / time-limit signal, on which submitit's handler requeues
    the job and exits) arriving while fairseq's ``save_checkpoint`` writes is handled after the save: its handler
    sees every checkpoint whole (``checkpoint_last.pt`` the new one, no ``.tmp``), and its ``SystemExit`` ends the
    save call (inside torch's writer it had become a ``RuntimeError`` that fairseq's retry swallowed)."""
    from fairseq import checkpoint_utils
    from test_equivalence import build_trainer, tiny_config

    cfg = tiny_config("music2vec", session_corpus, stock=False)
    cfg["checkpoint"].update(save_dir=str(tmp_path / "ckpt"), no_epoch_checkpoints=True)
    trainer = build_trainer(cfg)
    epoch_itr = trainer.get_train_iterator(epoch=1)
    for _ in epoch_itr.next_epoch_itr(shuffle=False):  # to the epoch's end, where fairseq saves
        pass
    stock_state = epoch_itr.state_dict
    epoch_itr.state_dict = lambda: {**stock_state(), "signal": RaisesSignalWhenSaved(signal.SIGUSR2)}
    seen = []

    def requeue_and_exit(signum, frame):  # what submitit's USR2 handler does, in short
        seen.append(sorted(p.name for p in (tmp_path / "ckpt").iterdir()))
        raise SystemExit(-1)

    previous = signal.signal(signal.SIGUSR2, requeue_and_exit)
    try:
        with caplog.at_level("INFO"), pytest.raises(SystemExit):
            checkpoint_utils.save_checkpoint(trainer.cfg.checkpoint, trainer, epoch_itr, val_loss=1.0)
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert seen == [["checkpoint_best.pt", "checkpoint_last.pt"]], f"the handler ran mid-save: {seen}"
    for name in seen[0]:
        assert "signal" in torch.load(tmp_path / "ckpt" / name, weights_only=True)["extra_state"]["train_iterator"]
    assert signal.getsignal(signal.SIGUSR2) is previous
    assert "SIGUSR2 arrived during a checkpoint save" in caplog.text


def hubert_tiny(data: Path, save: Path, hydra_dir: Path, max_update: int) -> list[str]:
    """fairseq-hydra-train command of a tiny MusicHuBERT run: 8 clips = one update per epoch, a checkpoint each."""
    return ["fairseq-hydra-train", "--config-dir", str(REPO / "config" / "pretrain"), "--config-name",
            "music_hubert_tiny", f"task.data={data}", f"task.label_dir={data}", "task.label_rate=50",
            f"common.user_dir={USER_DIR}", f"checkpoint.save_dir={save}", f"optimization.max_update={max_update}",
            f"hydra.run.dir={hydra_dir}"]


def popen(args: list[str], cwd: Path) -> subprocess.Popen:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               PYTHONUNBUFFERED="1")
    return subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def lr_by_update(log: str) -> dict[int, float]:
    """{update: lr} from the epoch lines of a fairseq json log (one update per epoch here)."""
    rows = [json.loads(line.split(" - ", 1)[1]) for line in log.splitlines() if "[train][INFO] - {" in line]
    return {int(r["train_num_updates"]): float(r["train_lr"]) for r in rows}


def kill_at_seeded_point(proc: subprocess.Popen, rng: random.Random) -> str:
    """Read ``proc``'s log until the drawn event (n-th checkpoint write start or n-th finished epoch), wait a
    drawn 0-300 ms, SIGKILL it; returns the event."""
    marker = rng.choice(["Saving checkpoint to", "[train][INFO] - {"])
    nth, delay = rng.randint(1, 3), rng.uniform(0.0, 0.3)
    seen = 0
    for line in proc.stdout:
        seen += marker in line
        if seen == nth:
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
            break
    proc.stdout.close()
    proc.wait(timeout=60)
    return f"{marker!r} #{nth} + {delay * 1000:.0f} ms"


@pytest.mark.slow
def test_fault_killed_pretraining_resumes_update_count_and_lr_schedule(tmp_path, session_corpus):
    max_update = 5
    reference = popen(hubert_tiny(session_corpus, tmp_path / "ref", tmp_path / "hydra_ref", max_update), tmp_path)
    reference.communicate(timeout=600)
    assert reference.returncode == 0
    expected_lr = lr_by_update((tmp_path / "hydra_ref" / "hydra_train.log").read_text())
    assert sorted(expected_lr) == list(range(1, max_update + 1))

    save = tmp_path / "ckpt"
    killed = popen(hubert_tiny(session_corpus, save, tmp_path / "hydra_killed", max_update), tmp_path)
    point = kill_at_seeded_point(killed, random.Random(SEED))
    assert killed.returncode == -signal.SIGKILL, f"the run ended before the kill at {point}"
    for ckpt in save.glob("*.pt"):  # whatever the kill interrupted, every checkpoint under its name is whole
        torch.load(ckpt, weights_only=True, map_location="cpu")
    done = num_updates(save / "checkpoint_last.pt") if (save / "checkpoint_last.pt").exists() else 0

    resumed = popen(hubert_tiny(session_corpus, save, tmp_path / "hydra_resumed", max_update), tmp_path)
    out = resumed.communicate(timeout=600)[0]
    assert resumed.returncode == 0, out[-4000:]
    lr = lr_by_update((tmp_path / "hydra_resumed" / "hydra_train.log").read_text())
    assert sorted(lr) == list(range(done + 1, max_update + 1)), f"update count continues after {done} ({point})"
    assert lr == {n: expected_lr[n] for n in lr}, "the LR schedule continues where it stopped"
    assert num_updates(save / "checkpoint_last.pt") == max_update
    assert not list(save.glob("*.tmp")), "no temp file outlives the rerun"
