"""Shared pytest fixtures: small synthetic music-like audio made in tmp_path, fairseq manifests and labels.

Everything here writes the on-disk formats users have (fairseq ``{split}.tsv``/``{split}.km``/``dict.km.txt``),
so tests exercise the same readers as real runs.
"""
import os
import socket
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

os.environ.setdefault("WANDB_MODE", "offline")  # nothing in the test session may try the network
os.environ.setdefault("HYDRA_FULL_ERROR", "1")

REPO = Path(__file__).resolve().parents[1]
USER_DIR = REPO / "music_ssl"
SAMPLE_RATE = 16000


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


def synth_clip(seconds: float, seed: int, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A music-like test signal: a few harmonic notes with decaying envelopes plus a little noise.

    Returns:
        (samples,) float32 in [-1, 1] at ``sample_rate``.
    """
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sample_rate))
    t = np.arange(n) / sample_rate
    out = 0.01 * rng.standard_normal(n)
    note_len = max(n // 4, 1)
    for start in range(0, n, note_len):
        f0 = 110.0 * 2 ** (rng.integers(0, 36) / 12)
        seg = t[start:start + note_len] - t[start]
        env = np.exp(-3.0 * seg)
        for h in range(1, 5):
            out[start:start + note_len] += env * np.sin(2 * np.pi * f0 * h * seg) / (h * 2)
    return (0.9 * out / np.max(np.abs(out))).astype(np.float32)


def write_clips(folder: Path, n: int, seconds: float, seed: int = 0, ext: str = "wav") -> list[Path]:
    """Write ``n`` synthetic clips of ``seconds`` each (16 kHz mono) into ``folder``; return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"clip{i:03d}.{ext}"
        sf.write(path, synth_clip(seconds, seed + i), SAMPLE_RATE)
        paths.append(path)
    return paths


def write_manifest(tsv: Path, root: Path, paths: list[Path]) -> Path:
    """fairseq manifest: root line, then ``relpath<TAB>num_samples`` per file."""
    rows = [str(root)] + [f"{p.relative_to(root)}\t{sf.info(p).frames}" for p in paths]
    tsv.write_text("\n".join(rows) + "\n")
    return tsv


def write_random_labels(tsv: Path, km: Path, label_rate: float, k: int, seed: int = 0) -> None:
    """Random integer labels at ``label_rate`` Hz for every manifest row, plus ``dict.km.txt`` beside them."""
    rng = np.random.default_rng(seed)
    lines = tsv.read_text().splitlines()[1:]
    with open(km, "w") as f:
        for line in lines:
            n_frames = int(np.ceil(int(line.split("\t")[1]) / SAMPLE_RATE * label_rate))
            f.write(" ".join(map(str, rng.integers(0, k, n_frames))) + "\n")
    (km.parent / "dict.km.txt").write_text("".join(f"{i} 1\n" for i in range(k)))


@pytest.fixture
def audio_corpus(tmp_path):
    """8 train + 2 valid synthetic clips of 2 s with manifests and random 50 Hz k=8 labels.

    Returns the data dir holding ``train.tsv``, ``valid.tsv``, ``{split}.km``, ``dict.km.txt``.
    """
    data = tmp_path / "data"
    audio = tmp_path / "audio"
    train = write_clips(audio / "train", 8, 2.0, seed=0)
    valid = write_clips(audio / "valid", 2, 2.0, seed=100)
    data.mkdir()
    for split, paths in (("train", train), ("valid", valid)):
        write_manifest(data / f"{split}.tsv", audio, paths)
        write_random_labels(data / f"{split}.tsv", data / f"{split}.km", 50, 8)
    return data


def free_port() -> int:
    """A TCP port free on localhost now (for a rendezvous of test workers)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def two_worker_corpus(tmp_path: Path) -> Path:
    """16 train + 2 valid clips of 2 s with k=8 labels at 50 Hz: one batch of 8 crops per worker for 2 workers."""
    data, audio = tmp_path / "data", tmp_path / "audio"
    data.mkdir()
    for split, n in (("train", 16), ("valid", 2)):
        write_manifest(data / f"{split}.tsv", audio, write_clips(audio / split, n, 2.0, seed=len(split)))
        write_random_labels(data / f"{split}.tsv", data / f"{split}.km", 50, 8)
    return data


def num_updates(checkpoint: Path) -> int:
    """Updates done when ``checkpoint`` was written (fairseq's optimizer history)."""
    state = torch.load(checkpoint, weights_only=True, map_location="cpu")
    return state["optimizer_history"][-1]["num_updates"]


def tensorboard_scalars(folder: Path) -> dict[str, dict[int, float]]:
    """{tag: {step: value}} of every scalar in the TFRecord event files of ``folder`` (tensorboardX's protobuf)."""
    import struct

    from tensorboardX.proto import event_pb2

    scalars: dict[str, dict[int, float]] = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data, pos = path.read_bytes(), 0
        while pos < len(data):  # record: u64 length, u32 crc, payload, u32 crc
            (length,) = struct.unpack("<Q", data[pos:pos + 8])
            event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
            pos += 16 + length
            for value in event.summary.value:
                if value.WhichOneof("value") == "simple_value":
                    scalars.setdefault(value.tag, {})[event.step] = value.simple_value
    return scalars


def wandb_offline_records(run_dir: Path) -> list:
    """The protobuf records of an offline wandb run (``run-*.wandb``: wandb's LevelDB-log framing, 32 KiB blocks)."""
    import struct

    from wandb.proto import wandb_internal_pb2

    data, block, header = next(run_dir.glob("run-*.wandb")).read_bytes(), 32768, 7
    records, pos, chunk = [], header, b""
    while pos + header <= len(data):
        room = block - pos % block
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + header])
        if room < header or (length == 0 and kind == 0):  # block padding
            pos += room
            continue
        if pos + header + length > len(data):  # a record still being written (wandb's core process flushes late)
            break
        chunk += data[pos + header:pos + header + length]
        pos += header + length
        if kind in (1, 4):  # FULL or LAST fragment
            records.append(wandb_internal_pb2.Record.FromString(chunk))
            chunk = b""
    return records


def run_cli(args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run a console command with this interpreter's bin dir first on PATH; raise with its output on failure."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


@pytest.fixture(scope="session")
def session_corpus(tmp_path_factory):
    """Like ``audio_corpus`` but made once per test session (shared by the tiny checkpoints)."""
    tmp = tmp_path_factory.mktemp("session_corpus")
    data, audio = tmp / "data", tmp / "audio"
    data.mkdir()
    for split, n, seed in (("train", 8, 0), ("valid", 2, 100)):
        paths = write_clips(audio / split, n, 2.0, seed=seed)
        write_manifest(data / f"{split}.tsv", audio, paths)
        write_random_labels(data / f"{split}.tsv", data / f"{split}.km", 50, 8)
    return data


def train_tiny(config_name: str, data: Path, save_dir: Path, *overrides: str, max_update: int = 2) -> Path:
    """Train ``config/pretrain/<config_name>`` for ``max_update`` updates on CPU; returns checkpoint_last.pt."""
    run_cli([
        "fairseq-hydra-train", "--config-dir", str(REPO / "config" / "pretrain"), "--config-name", config_name,
        f"task.data={data}", f"checkpoint.save_dir={save_dir}", f"common.user_dir={USER_DIR}",
        f"optimization.max_update={max_update}", f"hydra.run.dir={save_dir / 'hydra'}", *overrides,
    ], cwd=save_dir.parent)
    return save_dir / "checkpoint_last.pt"


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory, session_corpus):
    """``{"music2vec": path, "music_hubert": path}``: tiny models trained 2 updates once per session."""
    out = tmp_path_factory.mktemp("tiny_checkpoints")
    hubert_labels = (f"task.label_dir={session_corpus}", "task.label_rate=50")
    crops = ("task.crop_reading=true", "dataset.num_workers=1")  # what the base configs run: seek + read in a worker
    return {
        "music2vec": train_tiny("music2vec_tiny", session_corpus, out / "music2vec", *crops),
        "music_hubert": train_tiny("music_hubert_tiny", session_corpus, out / "music_hubert", *hubert_labels, *crops),
    }


@contextmanager
def fairseq_schema(config_name: str):
    """fairseq-hydra-train's schema registration (``FairseqConfig`` stored under the primary config's name) for one
    composition, removed afterwards: a process composes one primary config, a test session many, and a schema left
    under ``music_hubert_base`` would be matched against that file when a variant includes it as a default."""
    from fairseq.dataclass.initialize import hydra_init
    from hydra.core.config_store import ConfigStore

    hydra_init(config_name)
    try:
        yield
    finally:
        ConfigStore.instance().repo.pop(f"{config_name}.yaml", None)
