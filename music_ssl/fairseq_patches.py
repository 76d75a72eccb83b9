"""One-function overrides of fairseq, applied on ``import music_ssl`` (so in every trainer process).

1. **Atomic checkpoint copies.** fairseq writes the first checkpoint of a save atomically (``X.tmp`` then rename,
   ``checkpoint_utils.torch_persistent_save``) but *copies* it to the others (``checkpoint_last.pt`` after
   ``checkpoint_best.pt``) with ``shutil.copyfile`` in place: a run killed during that copy leaves a truncated
   ``checkpoint_last.pt`` that the rerun cannot resume from. :func:`atomic_copy` copies to ``X.tmp`` and renames.
2. **Stale temp files of a killed save** (``checkpoint_*.pt.tmp``) are removed by the rank that writes
   checkpoints when the next run starts (``checkpoint_utils.load_checkpoint``), before anything is written.
3. **One ``music_ssl``.** fairseq's ``import_user_module`` refuses a ``common.user_dir`` whose folder differs from
   an already imported module of the same name ("not globally unique"), and raises ``FileNotFoundError`` for a
   folder that no longer exists. Both happen to users: a checkpoint stores the user_dir of the machine that trained
   it (a cluster path, a checkout) and is then loaded where ``music_ssl`` is installed. A user_dir named
   ``music_ssl`` is this package: it is already imported and registered, so the imported one is used (logged).
4. **A full or read-only checkpoint folder** ends the run with one line naming the checkpoint, the space needed
   and free (or "read-only" / "permission denied") and the fix (a ``DiskError``, ``music_ssl.core.atomic``), and
   leaves no ``X.tmp``: :func:`torch_persistent_save` (fairseq retries a refused save twice, 2.5 s apart, logs a
   traceback and leaves ``checkpoint_best.pt.tmp``), :func:`atomic_copy`, and :func:`verify_checkpoint_directory`
   (fairseq's check at start that ``checkpoint.save_dir`` can be written, before the model is built).
"""
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Optional

import torch
from fairseq import checkpoint_utils, utils
from fairseq.file_io import PathManager

from .core.atomic import discard, disk_errno, disk_error

logger = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).resolve().parent
TMP_SUFFIX = ".tmp"  # fairseq's own suffix for atomic saves (torch_persistent_save)
SAVE_DIR_FIX = "set checkpoint.save_dir to a folder on another disk"
SAVE_TRIES, SAVE_RETRY_SECONDS = 3, 2.5  # fairseq's retries of a failed save (a flaky network store)


def atomic_copy(src_path: str, dst_path: str, overwrite: bool = False) -> bool:
    """Copy ``src_path`` to ``dst_path + '.tmp'``, then rename it over ``dst_path`` (never half a file)."""
    if PathManager.path_requires_pathmanager(dst_path):  # remote stores (iopath): fairseq's own copy
        return _FAIRSEQ_COPY(src_path, dst_path, overwrite=overwrite)
    if not overwrite and os.path.exists(dst_path):
        return False
    tmp = dst_path + TMP_SUFFIX
    try:
        shutil.copyfile(src_path, tmp)
        os.replace(tmp, dst_path)
    except Exception as err:
        disk = _refused(err, dst_path, tmp, os.path.getsize(src_path))
        if disk is None:
            raise
        raise disk from err
    return True


def torch_persistent_save(obj, filename: str, async_write: bool = False) -> None:
    """fairseq's save of a local checkpoint (``X.tmp``, then renamed onto ``X``), except that a disk refusing it
    (full, read-only, not permitted) is not retried and raises one ``DiskError`` line naming ``X``, with ``X.tmp``
    removed. Asynchronous and remote (iopath) saves are fairseq's own."""
    if async_write or PathManager.path_requires_pathmanager(filename) or not PathManager.supports_rename(filename):
        return _FAIRSEQ_SAVE(obj, filename, async_write=async_write)
    tmp = filename + TMP_SUFFIX
    for attempt in range(1, SAVE_TRIES + 1):
        try:
            with open(tmp, "wb") as f:
                torch.save(obj, f)
            os.replace(tmp, filename)
            return
        except Exception as err:
            disk = _refused(err, filename, tmp, state_bytes(obj))
            if disk is not None:
                raise disk from err
            if attempt == SAVE_TRIES:
                raise
            logger.warning("saving %s failed (%s); retrying in %.1f s", filename, err, SAVE_RETRY_SECONDS)
            time.sleep(SAVE_RETRY_SECONDS)


def state_bytes(obj) -> int:
    """Bytes of the tensors in a checkpoint state (nested dicts, lists, tuples): about its size on disk."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(state_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(state_bytes(v) for v in obj)
    return 0


def _refused(err: Exception, path: str, tmp: str, needed: Optional[int] = None) -> Optional[Exception]:
    """Remove ``tmp`` after ``err`` writing checkpoint ``path`` through it; the ``DiskError`` to raise when the disk
    refused the write (full, read-only, not permitted), else None (``err`` stays as it is)."""
    code = disk_errno(err, path)  # before removing tmp: a disk full now is seen as full
    discard(Path(tmp))
    return None if code is None else disk_error(code, path, needed, SAVE_DIR_FIX)


def verify_checkpoint_directory(save_dir: str) -> None:
    """fairseq's check at start that ``checkpoint.save_dir`` can be written, a refusal as one ``DiskError`` line."""
    try:
        _FAIRSEQ_VERIFY_DIR(save_dir)
    except Exception as err:
        code = disk_errno(err, os.path.join(save_dir, "dummy"))
        if code is None:
            raise
        raise disk_error(code, save_dir, fix=SAVE_DIR_FIX) from err


def load_checkpoint_without_stale_tmp(cfg, trainer, **passthrough_args):
    """fairseq's ``load_checkpoint`` after the writing rank removed ``*.pt.tmp`` left by a killed save."""
    if trainer.should_save_checkpoint_on_current_rank and os.path.isdir(cfg.save_dir):
        for tmp in sorted(Path(cfg.save_dir).glob(f"*.pt{TMP_SUFFIX}")):
            logger.warning("removing %s: a checkpoint write interrupted in an earlier run", tmp)
            tmp.unlink()
    return _FAIRSEQ_LOAD_CHECKPOINT(cfg, trainer, **passthrough_args)


def import_user_module(args) -> None:
    """fairseq's ``import_user_module``, except that a user_dir named ``music_ssl`` is this imported package."""
    user_dir = getattr(args, "user_dir", None)
    if user_dir is not None and Path(user_dir).name == PACKAGE_DIR.name:
        if Path(user_dir).resolve() != PACKAGE_DIR:
            logger.info("common.user_dir=%s: using the imported music_ssl at %s", user_dir, PACKAGE_DIR)
        return
    _FAIRSEQ_IMPORT_USER_MODULE(args)


def _apply() -> None:
    """Install the overrides once (idempotent: a reload keeps fairseq's originals)."""
    global _FAIRSEQ_COPY, _FAIRSEQ_LOAD_CHECKPOINT, _FAIRSEQ_IMPORT_USER_MODULE, _FAIRSEQ_SAVE, _FAIRSEQ_VERIFY_DIR
    _FAIRSEQ_COPY = getattr(PathManager.copy, "__wrapped__", PathManager.copy)
    _FAIRSEQ_LOAD_CHECKPOINT = getattr(checkpoint_utils.load_checkpoint, "__wrapped__", checkpoint_utils.load_checkpoint)
    _FAIRSEQ_IMPORT_USER_MODULE = getattr(utils.import_user_module, "__wrapped__", utils.import_user_module)
    _FAIRSEQ_SAVE = getattr(checkpoint_utils.torch_persistent_save, "__wrapped__",
                            checkpoint_utils.torch_persistent_save)
    _FAIRSEQ_VERIFY_DIR = getattr(checkpoint_utils.verify_checkpoint_directory, "__wrapped__",
                                  checkpoint_utils.verify_checkpoint_directory)
    for fn, original in ((atomic_copy, _FAIRSEQ_COPY), (load_checkpoint_without_stale_tmp, _FAIRSEQ_LOAD_CHECKPOINT),
                         (import_user_module, _FAIRSEQ_IMPORT_USER_MODULE), (torch_persistent_save, _FAIRSEQ_SAVE),
                         (verify_checkpoint_directory, _FAIRSEQ_VERIFY_DIR)):
        fn.__wrapped__ = original
    PathManager.copy = staticmethod(atomic_copy)
    checkpoint_utils.load_checkpoint = load_checkpoint_without_stale_tmp
    utils.import_user_module = import_user_module
    checkpoint_utils.torch_persistent_save = torch_persistent_save
    checkpoint_utils.verify_checkpoint_directory = verify_checkpoint_directory


_apply()
