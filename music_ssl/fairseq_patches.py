"""One-function overrides of fairseq (and one of submitit, which runs it on Slurm), applied on ``import music_ssl`` (so
in every trainer process).

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
5. **CPU tasks under Slurm.** fairseq's Slurm rendezvous (``distributed_utils._infer_slurm_init``: ranks from
   ``SLURM_PROCID``, ``tcp://<first node>:distributed_port``) takes each task's CUDA device from ``SLURM_LOCALID``
   and then selects it, which raises "no NVIDIA driver" in every task but a node's first when there is no CUDA
   (``run/slurm_cpu.yaml``, ``tests/test_slurm.py``). Without CUDA a task's device index stays 0 (there is no
   device to select); with CUDA the rendezvous is fairseq's own.
6. **Resume on more than one rank.** fairseq's trainer reads ``checkpoint_last.pt`` on rank 0 alone and sends the
   state to the others (``distributed_utils.broadcast_object``: ``torch.save`` there, ``torch.load`` here). The read
   made the state's ``cfg`` an OmegaConf ``DictConfig``, which torch's safe unpickler (``weights_only``, on since
   torch 2.6 and kept on by ``music_ssl``) refuses on the receiving ranks: a resume on 2+ ranks (one node's GPUs,
   torchrun, Slurm) stopped there, and so would any state with a tensor in it (fairseq sends tensors apart and
   pickles a ``_TensorPlaceholder`` in their place). :func:`broadcast_object` sends OmegaConf values of a dict as
   the plain containers the file holds, makes them OmegaConf configs again on arrival, and allows fairseq's
   placeholder (a frozen dataclass holding an index) while it unpickles; ``weights_only`` stays on.
7. **submitit's requeue outlives the requeue** (submitit runs fairseq on Slurm: ``run/slurm_*.yaml``). On USR2 (the
   time limit near, or a preemption) submitit's handler in rank 0 runs ``scontrol requeue JOBID``, and the requeue
   makes Slurm send SIGTERM to every process of the job, that ``scontrol`` included: when it arrived first
   (seen on the test cluster at a real time limit), submitit raised "died with SIGTERM", the launcher reported
   the job failed and stopped waiting, and Slurm ran the requeued job with nobody waiting for it.
   :func:`requeue_ignoring_sigterm` runs it with SIGTERM ignored (a child inherits an ignored signal through
   exec); submitit's task ignores SIGTERM anyway (it logs and bypasses it).
8. **A signal never cuts a checkpoint save.** A Python signal handler runs wherever the main thread is; inside
   ``torch.save``'s writer (C++) the exception it raises (submitit's USR2 requeue ends with ``SystemExit``, Ctrl-C
   is ``KeyboardInterrupt``) came back as a ``RuntimeError`` ("unexpected pos …"), which fairseq's save retried: the
   exit was lost, and rank 0 trained on after requeueing its own job (seen on the test cluster; the job then ran
   twice). :func:`save_checkpoint` (fairseq's whole save: the first file, its copies, the pruning) holds the
   Python handlers' signals until the save is done, then handles them; ``checkpoint_last.pt`` is then the newest.
"""
import contextlib
import functools
import logging
import os
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Optional

import torch
from fairseq import checkpoint_utils, utils
from fairseq.distributed import utils as distributed_utils
from fairseq.file_io import PathManager
from omegaconf import OmegaConf
from submitit.slurm.slurm import SlurmJobEnvironment

from .core.atomic import discard, disk_errno, disk_error

logger = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).resolve().parent
TMP_SUFFIX = ".tmp"  # fairseq's own suffix for atomic saves (torch_persistent_save)
SAVE_DIR_FIX = "set checkpoint.save_dir to a folder on another disk"
SAVE_TRIES, SAVE_RETRY_SECONDS = 3, 2.5  # fairseq's retries of a failed save (a flaky network store)
SENT_CONFIGS = "__music_ssl_omegaconf_keys__"  # in a broadcast dict: {key: struct flag} of its OmegaConf values


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


@contextlib.contextmanager
def signals_held():
    """Hold the signals that have a Python handler until the block ends, then raise each caught one again, in order
    (its handler runs then, in this thread). Only the main thread runs Python handlers; elsewhere it holds nothing.
    Nested blocks hand their signals to the outer one."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    handlers = {sig: handler for sig in signal.valid_signals() if callable(handler := signal.getsignal(sig))}
    for sig in handlers:
        signal.signal(sig, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        for sig in caught:
            logger.info("%s arrived during a checkpoint save: handled now that the save is done",
                        signal.Signals(sig).name)
            signal.raise_signal(sig)


@functools.wraps(checkpoint_utils.save_checkpoint)
def save_checkpoint(*args, **kwargs):
    """fairseq's ``checkpoint_utils.save_checkpoint`` with signals held until it is done (:func:`signals_held`)."""
    with signals_held():
        return _FAIRSEQ_SAVE_CHECKPOINT(*args, **kwargs)


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


def infer_slurm_init(cfg, num_pipelines_per_node) -> bool:
    """fairseq's Slurm rendezvous; without CUDA, the task's ``SLURM_LOCALID`` is not a device to select."""
    inferred = _FAIRSEQ_INFER_SLURM_INIT(cfg, num_pipelines_per_node)
    if inferred and cfg.device_id and not torch.cuda.is_available():
        logger.info("rank %d: no CUDA, so SLURM_LOCALID %d selects no device", cfg.distributed_rank, cfg.device_id)
        cfg.device_id = 0
    return inferred


def broadcast_object(obj, src_rank: int, group, dist_device=None):
    """fairseq's broadcast of a Python object from ``src_rank`` to the other ranks of ``group``, with the OmegaConf
    values of a dict sent as plain containers (the receivers' safe unpickler refuses ``DictConfig``) and fairseq's
    ``_TensorPlaceholder`` allowed while the receivers unpickle."""
    if distributed_utils.get_rank(group) == src_rank:
        _FAIRSEQ_BROADCAST_OBJECT(plain_configs(obj), src_rank, group, dist_device)
        return obj  # fairseq hands the sender its own object back
    with torch.serialization.safe_globals([distributed_utils._TensorPlaceholder]):
        received = _FAIRSEQ_BROADCAST_OBJECT(obj, src_rank, group, dist_device)
    return configs_again(received)


def plain_configs(obj):
    """``obj``, or a copy of a dict whose OmegaConf values are plain containers, listed under ``SENT_CONFIGS``."""
    if not isinstance(obj, dict) or not any(OmegaConf.is_config(v) for v in obj.values()):
        return obj
    configs = {k: OmegaConf.is_struct(v) for k, v in obj.items() if OmegaConf.is_config(v)}
    plain = {k: OmegaConf.to_container(v) if k in configs else v for k, v in obj.items()}
    plain[SENT_CONFIGS] = configs
    return plain


def configs_again(obj):
    """The inverse of :func:`plain_configs` on a received object."""
    if not isinstance(obj, dict) or SENT_CONFIGS not in obj:
        return obj
    for key, struct in obj.pop(SENT_CONFIGS).items():
        obj[key] = OmegaConf.create(obj[key])
        OmegaConf.set_struct(obj[key], struct)
    return obj


def requeue_ignoring_sigterm(self, countdown: int) -> None:
    """submitit's ``SlurmJobEnvironment._requeue`` (``scontrol requeue JOBID``) with SIGTERM ignored meanwhile, so
    that the SIGTERM the requeue makes Slurm send cannot kill ``scontrol`` before it returns."""
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)  # inherited by the scontrol child
    try:
        _SUBMITIT_REQUEUE(self, countdown)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _apply() -> None:
    """Install the overrides once (idempotent: a reload keeps fairseq's originals)."""
    global _FAIRSEQ_COPY, _FAIRSEQ_LOAD_CHECKPOINT, _FAIRSEQ_IMPORT_USER_MODULE, _FAIRSEQ_SAVE, _FAIRSEQ_VERIFY_DIR
    global _FAIRSEQ_INFER_SLURM_INIT, _FAIRSEQ_BROADCAST_OBJECT, _SUBMITIT_REQUEUE, _FAIRSEQ_SAVE_CHECKPOINT
    _FAIRSEQ_COPY = getattr(PathManager.copy, "__wrapped__", PathManager.copy)
    _FAIRSEQ_LOAD_CHECKPOINT = getattr(checkpoint_utils.load_checkpoint, "__wrapped__", checkpoint_utils.load_checkpoint)
    _FAIRSEQ_IMPORT_USER_MODULE = getattr(utils.import_user_module, "__wrapped__", utils.import_user_module)
    _FAIRSEQ_SAVE = getattr(checkpoint_utils.torch_persistent_save, "__wrapped__",
                            checkpoint_utils.torch_persistent_save)
    _FAIRSEQ_VERIFY_DIR = getattr(checkpoint_utils.verify_checkpoint_directory, "__wrapped__",
                                  checkpoint_utils.verify_checkpoint_directory)
    _FAIRSEQ_INFER_SLURM_INIT = getattr(distributed_utils._infer_slurm_init, "__wrapped__",
                                        distributed_utils._infer_slurm_init)
    _FAIRSEQ_BROADCAST_OBJECT = getattr(distributed_utils.broadcast_object, "__wrapped__",
                                        distributed_utils.broadcast_object)
    _SUBMITIT_REQUEUE = getattr(SlurmJobEnvironment._requeue, "__wrapped__", SlurmJobEnvironment._requeue)
    _FAIRSEQ_SAVE_CHECKPOINT = getattr(checkpoint_utils.save_checkpoint, "__wrapped__",
                                       checkpoint_utils.save_checkpoint)
    for fn, original in ((atomic_copy, _FAIRSEQ_COPY), (load_checkpoint_without_stale_tmp, _FAIRSEQ_LOAD_CHECKPOINT),
                         (import_user_module, _FAIRSEQ_IMPORT_USER_MODULE), (torch_persistent_save, _FAIRSEQ_SAVE),
                         (verify_checkpoint_directory, _FAIRSEQ_VERIFY_DIR),
                         (infer_slurm_init, _FAIRSEQ_INFER_SLURM_INIT), (broadcast_object, _FAIRSEQ_BROADCAST_OBJECT),
                         (requeue_ignoring_sigterm, _SUBMITIT_REQUEUE),
                         (save_checkpoint, _FAIRSEQ_SAVE_CHECKPOINT)):
        fn.__wrapped__ = original
    PathManager.copy = staticmethod(atomic_copy)
    checkpoint_utils.load_checkpoint = load_checkpoint_without_stale_tmp
    utils.import_user_module = import_user_module
    checkpoint_utils.torch_persistent_save = torch_persistent_save
    checkpoint_utils.verify_checkpoint_directory = verify_checkpoint_directory
    distributed_utils._infer_slurm_init = infer_slurm_init
    distributed_utils.broadcast_object = broadcast_object
    SlurmJobEnvironment._requeue = requeue_ignoring_sigterm
    checkpoint_utils.save_checkpoint = save_checkpoint


_apply()
