"""Three one-function overrides of fairseq, applied on ``import music_ssl`` (so in every trainer process).

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
"""
import logging
import os
import shutil
from pathlib import Path

from fairseq import checkpoint_utils, utils
from fairseq.file_io import PathManager

logger = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).resolve().parent
TMP_SUFFIX = ".tmp"  # fairseq's own suffix for atomic saves (torch_persistent_save)


def atomic_copy(src_path: str, dst_path: str, overwrite: bool = False) -> bool:
    """Copy ``src_path`` to ``dst_path + '.tmp'``, then rename it over ``dst_path`` (never half a file)."""
    if PathManager.path_requires_pathmanager(dst_path):  # remote stores (iopath): fairseq's own copy
        return _FAIRSEQ_COPY(src_path, dst_path, overwrite=overwrite)
    if not overwrite and os.path.exists(dst_path):
        return False
    tmp = dst_path + TMP_SUFFIX
    shutil.copyfile(src_path, tmp)
    os.replace(tmp, dst_path)
    return True


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
    global _FAIRSEQ_COPY, _FAIRSEQ_LOAD_CHECKPOINT, _FAIRSEQ_IMPORT_USER_MODULE
    _FAIRSEQ_COPY = getattr(PathManager.copy, "__wrapped__", PathManager.copy)
    _FAIRSEQ_LOAD_CHECKPOINT = getattr(checkpoint_utils.load_checkpoint, "__wrapped__", checkpoint_utils.load_checkpoint)
    _FAIRSEQ_IMPORT_USER_MODULE = getattr(utils.import_user_module, "__wrapped__", utils.import_user_module)
    for fn, original in ((atomic_copy, _FAIRSEQ_COPY), (load_checkpoint_without_stale_tmp, _FAIRSEQ_LOAD_CHECKPOINT),
                         (import_user_module, _FAIRSEQ_IMPORT_USER_MODULE)):
        fn.__wrapped__ = original
    PathManager.copy = staticmethod(atomic_copy)
    checkpoint_utils.load_checkpoint = load_checkpoint_without_stale_tmp
    utils.import_user_module = import_user_module


_apply()
