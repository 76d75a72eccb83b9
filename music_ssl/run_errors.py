"""How a training run ends on an expected error: one ``error: …`` line, exit 1, whatever the processes.

``fairseq-hydra-train`` runs fairseq's ``main`` inside a hydra job; hydra catches what the job raises and prints
its traceback (20–25 lines) with our message last. These overrides, installed on ``import music_ssl``, end the run
the way every music-ssl command ends on a :class:`~music_ssl.core.errors.MusicSSLError` (bad data, labels, label
rate, settings, an unreadable checkpoint); any other error is a bug and keeps its traceback:

1. **The job's report** (hydra's ``JobReturn.return_value``): read where the job ran (one process, or each worker
   torchrun made) and by the parent of a ``-m`` run (submitit's workers send their job's result back to it).
   A job that failed with an expected error writes its one line and exits 1, instead of hydra's "Error executing
   job …" and traceback.
2. **Workers fairseq spawns itself** (``distributed_world_size`` > 1 on one node: ``torch.multiprocessing.spawn``
   of ``distributed_utils.distributed_main``): torch sends a worker's traceback to the parent as text. A worker
   turns an expected error into :class:`SpawnedWorkerError`, whose text ends in the one line; the parent's report
   (1) writes that line alone.
3. **Two of fairseq's own tracebacks become expected errors**: a checkpoint that cannot be read on resume
   (``Trainer.load_checkpoint``: truncated, empty, not a checkpoint) names the file and how to resume from
   another one, and a ``task.data`` that is not a folder (fairseq's first look at it,
   ``data_utils.raise_if_valid_subsets_unintentionally_ignored``, runs before any of the tasks' checks) names
   the setting.

(1) and (2) need ``music_ssl`` imported before fairseq runs, but fairseq imports the plugin only inside ``main``
(from ``common.user_dir``). So every shipped pretrain config names :class:`RunErrors` in ``hydra.callbacks``:
hydra instantiates it, importing the plugin, in each process it starts a run in (submitit's workers unpickle it);
``music-ssl-train`` imports the plugin first. :class:`RunErrors` also stops a run without ``common.user_dir``
with one line (fairseq would print its ~40 task names and never name the setting).
"""
import json
import os
import time
import zipfile
from pathlib import Path
from typing import NoReturn, Optional

import torch
from fairseq import trainer, utils
from fairseq.data import data_utils
from fairseq.distributed import utils as distributed_utils
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import OmegaConf

from .core.errors import CheckpointError, DataError, MusicSSLError, exit_with_error_line

USER_DIR_FIX = 'add common.user_dir="$(music-ssl-config-dir --user-dir)", or use music-ssl-train (it sets it)'
LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"  # torch.save before the zip format


class SpawnedWorkerError(MusicSSLError):
    """An expected error of a worker fairseq spawned, on its way to the parent: torch hands the parent the worker's
    traceback as text, whose last line is ``music_ssl.run_errors.SpawnedWorkerError: <the one line>``."""

    PREFIX = f"{__module__}.SpawnedWorkerError: "


def error_message(err: MusicSSLError) -> str:
    """The one line of an expected error. One raised in a DataLoader worker comes back with the worker's traceback
    in its message (``Caught DataError in DataLoader worker process 0. Original Traceback …``): its own message is
    what follows the last ``<module>.<class>: ``."""
    text = str(err).strip()
    prefix = f"{type(err).__module__}.{type(err).__qualname__}: "
    if "Original Traceback" in text and prefix in text:
        text = text.rsplit(prefix, 1)[1].strip()
    return " ".join(text.splitlines())


def end_run(message: str) -> NoReturn:
    """``error: <message>``, exit 1. A worker torchrun made also writes the error file torchrun gave it, so that
    torchrun's own failure report shows the line as the root cause (else "To enable traceback see: …")."""
    error_file = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if error_file:  # torch.distributed.elastic's format (ErrorHandler.record_exception)
        line = f"error: {message}"
        info = {"py_callstack": line, "timestamp": str(int(time.time()))}
        Path(error_file).write_text(json.dumps({"message": {"message": line, "extraInfo": info}}))
    exit_with_error_line(message)


def job_return_value(job: JobReturn):
    """hydra's ``JobReturn.return_value``, except that a job failed with an expected error (or a worker fairseq
    spawned did) ends the process with its one ``error:`` line and exit status 1."""
    if job.status == JobStatus.FAILED:
        err = job._return_value
        if isinstance(err, MusicSSLError):
            end_run(error_message(err))
        reported = spawned_worker_line(err)
        if reported is not None:
            end_run(reported)
    return _HYDRA_RETURN_VALUE(job)


def spawned_worker_line(err: BaseException) -> Optional[str]:
    """The one line of a worker fairseq spawned that stopped on an expected error, else None."""
    if not isinstance(err, torch.multiprocessing.ProcessRaisedException):
        return None
    last = str(err).strip().splitlines()[-1]
    return last[len(SpawnedWorkerError.PREFIX):] if last.startswith(SpawnedWorkerError.PREFIX) else None


def distributed_main(i, main, cfg, kwargs):
    """fairseq's ``distributed_main``; in a worker ``torch.multiprocessing.spawn`` made (fairseq hands only those a
    ``start_rank``), an expected error leaves as :class:`SpawnedWorkerError` (its traceback text is all the parent
    gets). In a process of its own (torchrun, Slurm, submitit) the error goes on to the job's report."""
    spawned = "start_rank" in kwargs
    try:
        return _FAIRSEQ_DISTRIBUTED_MAIN(i, main, cfg, kwargs)
    except MusicSSLError as err:
        if not spawned:
            raise
        raise SpawnedWorkerError(error_message(err)) from None


def load_trainer_checkpoint(self, filename, *args, **kwargs):
    """fairseq's ``Trainer.load_checkpoint``; a checkpoint file that cannot be read (empty, truncated, not a torch
    file) is a :class:`CheckpointError` naming it and how to resume, instead of torch's unpickling traceback."""
    try:
        return _FAIRSEQ_TRAINER_LOAD_CHECKPOINT(self, filename, *args, **kwargs)
    except Exception as err:
        damage = checkpoint_damage(filename)
        if damage is None:  # the file reads: the error is another one
            raise
        raise CheckpointError(unreadable_checkpoint_message(Path(filename), damage)) from err


def checkpoint_damage(path) -> Optional[str]:
    """Why the local file ``path`` cannot be a whole torch checkpoint, or None when it may be one (a zip archive
    whose members pass their CRC, or torch's legacy format). Read only after a load failed."""
    path = Path(path)
    if not path.is_file():
        return None
    if path.stat().st_size == 0:
        return "an empty file"
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            legacy = f.read(len(LEGACY_TORCH_MAGIC)) == LEGACY_TORCH_MAGIC
        return None if legacy else "not a whole torch zip archive: cut short, or not a checkpoint"
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        return f"a damaged zip archive ({err})"
    return None if bad is None else f"member {bad} is damaged"


def unreadable_checkpoint_message(path: Path, why: str) -> str:
    """One line: the file, why, and how to resume from another checkpoint of its folder (newest first)."""
    others = sorted((p for p in path.parent.glob("checkpoint*.pt") if p != path and p.is_file()),
                    key=lambda p: p.stat().st_mtime, reverse=True)
    if others:
        names = ", ".join(p.name for p in others[:4])
        resume = (f"then resume from an older checkpoint of its folder ({names}): cp {others[0]} {path}, or pass "
                  f"checkpoint.restore_file=FILE; else the run starts from scratch")
    else:
        resume = "and the run starts from scratch (its folder holds no other checkpoint)"
    return (f"{path}: cannot be read as a checkpoint ({why}): a save cut short by a killed run or a full disk? "
            f"Move it away (mv {path} {path}.bad), {resume}.")


def check_data_folders(train_cfg) -> None:
    """fairseq's ``raise_if_valid_subsets_unintentionally_ignored`` (its first look at ``task.data``, before the
    datasets load) after checking that each ``task.data`` path is a folder: fairseq lists it with ``os.listdir``,
    whose ``NotADirectoryError`` / ``FileNotFoundError`` never names the setting."""
    data = getattr(train_cfg.task, "data", None)
    for folder in utils.split_paths(data) if isinstance(data, str) else []:
        if "://" in folder or os.path.isdir(folder):
            continue
        if os.path.exists(folder):
            parent = f" (task.data={Path(folder).parent}?)" if folder.endswith(".tsv") else ""
            raise DataError(f"task.data={folder}: a file, not a folder; task.data is the folder holding the "
                            f"manifests {{split}}.tsv{parent}.")
        raise DataError(f"task.data={folder}: no such folder; point task.data at the folder holding the manifests "
                        f"{{split}}.tsv (music-ssl-manifest AUDIO_DIR --dest FOLDER makes them).")
    return _FAIRSEQ_VALID_SUBSETS_CHECK(train_cfg)


def require_user_dir(config) -> None:
    """One line when ``common.user_dir`` is unset."""
    if not OmegaConf.select(config, "common.user_dir", default=None):
        end_run("common.user_dir is not set: fairseq imports the plugin's models and tasks from it and "
                             f"records it in the checkpoints for the tools that load them; {USER_DIR_FIX}.")


class RunErrors(Callback):
    """The hydra callback every shipped pretrain config names (``hydra.callbacks.music_ssl``). Hydra instantiates
    it in each process it starts a run in (submitit's workers unpickle it), which imports ``music_ssl``: the
    overrides above are in place before fairseq starts. A run without ``common.user_dir`` stops with one line."""

    def on_run_start(self, config, **kwargs) -> None:
        require_user_dir(config)

    def on_multirun_start(self, config, **kwargs) -> None:
        require_user_dir(config)


def _apply() -> None:
    """Install the overrides once (idempotent: a reload keeps the originals)."""
    global _HYDRA_RETURN_VALUE, _FAIRSEQ_DISTRIBUTED_MAIN, _FAIRSEQ_TRAINER_LOAD_CHECKPOINT
    global _FAIRSEQ_VALID_SUBSETS_CHECK
    report = JobReturn.return_value  # a property: hydra's getter and setter
    _HYDRA_RETURN_VALUE = getattr(report.fget, "__wrapped__", report.fget)
    _FAIRSEQ_DISTRIBUTED_MAIN = getattr(distributed_utils.distributed_main, "__wrapped__",
                                        distributed_utils.distributed_main)
    _FAIRSEQ_TRAINER_LOAD_CHECKPOINT = getattr(trainer.Trainer.load_checkpoint, "__wrapped__",
                                               trainer.Trainer.load_checkpoint)
    _FAIRSEQ_VALID_SUBSETS_CHECK = getattr(data_utils.raise_if_valid_subsets_unintentionally_ignored, "__wrapped__",
                                           data_utils.raise_if_valid_subsets_unintentionally_ignored)
    for fn, wrapped in ((job_return_value, _HYDRA_RETURN_VALUE), (distributed_main, _FAIRSEQ_DISTRIBUTED_MAIN),
                        (load_trainer_checkpoint, _FAIRSEQ_TRAINER_LOAD_CHECKPOINT),
                        (check_data_folders, _FAIRSEQ_VALID_SUBSETS_CHECK)):
        fn.__wrapped__ = wrapped
    JobReturn.return_value = property(job_return_value, report.fset)
    distributed_utils.distributed_main = distributed_main
    trainer.Trainer.load_checkpoint = load_trainer_checkpoint
    data_utils.raise_if_valid_subsets_unintentionally_ignored = check_data_folders


_apply()
