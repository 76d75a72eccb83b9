"""The demo pipeline: the README's whole workflow on the demo corpus, each stage the real command a user runs.

Stages, in order (``demo_out/`` by default; every command is logged before it runs)::

    corpus        music-ssl-make-corpus         demo_out/corpus                       (FluidSynth renders)
    manifest      music-ssl-manifest            corpus/audio/train -> manifest/{train,valid}.tsv
    mfcc_labels   music-ssl-kmeans all          manifest -> labels/mfcc39_k{K}/{split}.km  (100 Hz, iteration 1)
    hubert_iter1  fairseq-hydra-train           music_hubert_tiny on the MFCC labels
    layer_labels  music-ssl-kmeans all          --feature layer of hubert_iter1 -> labels/layer{L}_k{K} (50 Hz)
    hubert_iter2  fairseq-hydra-train           music_hubert_tiny on the layer labels (iteration 2)
    music2vec     fairseq-hydra-train           music2vec_tiny
    probe_<name>  music-ssl-probe               key / instrument / note_instrument / pitch / beat CSV tasks, one run
                                                per source: both checkpoints, a random init of each architecture,
                                                CHROMA, MFCC
    report        (here)                        report.md, loss_curves.png, learning.png, layers.png

Each stage has a key: the hash of its command, of the contents of the config files it reads (the tiny pretraining
YAML, the probe YAML) and of the keys of the stages it reads. A finished stage leaves
``.stages/<name>.json`` holding its key; a rerun with the same key reuses it, a changed key reruns it and every
stage after it. A training stage interrupted half way resumes from its ``checkpoint_last.pt`` when its key is
unchanged, and starts afresh (its folder cleared) otherwise. The marker is written only after the command exits 0,
so nothing half-made is ever reused.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from music_ssl.core.atomic import write_text_atomic
from music_ssl.core.device import resolve_device
from music_ssl.core.fingerprint import data_sha256, file_sha256
from music_ssl.core.errors import DemoError
from music_ssl.core.resources import PLUGIN_DIR, PRETRAIN_CONFIG_DIR, PROBE_CONFIG_DIR

logger = logging.getLogger(__name__)

STAGES_DIR = ".stages"


@dataclass
class DemoSettings:
    """Sizes of the demo; the defaults finish in about 18 minutes on a 2-core CPU (README: the measured run).

    Attributes:
        out_dir: everything goes here (default ``demo_out``).
        n_pieces / n_notes: corpus size (multi-instrument 6-s pieces / 1.5-s single notes).
        piece_seconds: seconds per piece.
        seed: corpus, k-means and training seed.
        n_clusters: k of both k-means label sets.
        label_layer: hidden state of the iteration-1 model clustered for iteration 2 (tiny model: 4 layers).
        hubert_updates / music2vec_updates: pretraining updates of each tiny model (per HuBERT iteration).
        probe_seeds: seeds per probe config.
        probe_epochs: most epochs per probe (None: config/probe/demo.yaml's; early stopping usually ends sooner).
        music2vec2: also train music2vec2 tiny (data2vec 2.0's recipe, ``music2vec2_tiny``) for ``music2vec_updates``
            and probe it and its random init beside the others (default False: the demo's stages only).
        device: ``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N`` (default ``auto``; checked by
            :func:`music_ssl.core.device.resolve_device`).
    """

    out_dir: Path = Path("demo_out")
    n_pieces: int = 400
    n_notes: int = 600
    piece_seconds: float = 6.0
    seed: int = 0
    n_clusters: int = 100
    label_layer: int = 3
    hubert_updates: int = 1000
    music2vec_updates: int = 1000
    probe_seeds: int = 3
    probe_epochs: int | None = None
    device: str = "auto"
    music2vec2: bool = False

    def torch_device(self) -> torch.device:
        """``device`` resolved (``auto`` → cuda or cpu); raises :class:`DeviceError` for one this machine lacks."""
        return resolve_device(self.device)

    def use_cuda(self) -> bool:
        return self.torch_device().type == "cuda"

    def training_env(self) -> dict[str, str]:
        """fairseq's single-GPU trainer runs on the current CUDA device (cuda:0), so ``cuda:N`` trains with that
        device made the only visible one (its id in ``CUDA_VISIBLE_DEVICES`` when that is already set)."""
        device = self.torch_device()
        if device.type != "cuda" or device.index is None:
            return {}
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
        ids = [v.strip() for v in visible.split(",")] if visible else [str(i) for i in range(device.index + 1)]
        return {"CUDA_VISIBLE_DEVICES": ids[device.index]}


@dataclass
class Stage:
    """One step: a command, the files that prove it finished, and the folder it owns (cleared on a new key)."""

    name: str
    title: str
    command: list[str]
    outputs: list[Path]
    workdir: Path | None = None
    upstream: tuple[str, ...] = ()
    configs: tuple[Path, ...] = ()  # files whose contents are part of the key (editing one reruns the stage)
    env: dict[str, str] = field(default_factory=dict)  # set for the command (the device a trainer sees)

    def __post_init__(self):
        self.command = [str(part) for part in self.command]  # paths and numbers as the shell would pass them


@dataclass
class StageResult:
    name: str
    title: str
    status: str  # "ran" or "reused"
    seconds: float
    key: str
    command: list[str] = field(default_factory=list)


def tool_env() -> dict:
    """The environment for stage commands: this interpreter's bin dir first on PATH (console scripts)."""
    bin_dir = str(Path(sys.executable).parent)
    return dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", PYTHONUNBUFFERED="1")


def stage_key(stage: Stage, keys: dict[str, str]) -> str:
    """Hash of the stage's command, its config files' contents and its upstream stages' keys."""
    configs = [file_sha256(c) for c in stage.configs]
    payload = json.dumps({"command": stage.command, "upstream": [keys[u] for u in stage.upstream],
                          **({"configs": configs} if configs else {})})
    return data_sha256(payload)[:16]


class StageRunner:
    """Runs stages in order, reusing finished ones (see the module docstring)."""

    def __init__(self, out_dir: Path, total: int):
        self.out_dir = out_dir
        self.markers = out_dir / STAGES_DIR
        self.keys: dict[str, str] = {}
        self.results: list[StageResult] = []
        self.total = total

    def marker(self, name: str, suffix: str = "json") -> Path:
        return self.markers / f"{name}.{suffix}"

    def finished(self, stage: Stage, key: str) -> bool:
        try:
            done = json.loads(self.marker(stage.name).read_text())
        except (OSError, ValueError):
            return False
        return done.get("key") == key and all(p.exists() for p in stage.outputs)

    def run(self, stage: Stage) -> StageResult:
        key = stage_key(stage, self.keys)
        self.keys[stage.name] = key
        step = f"[{len(self.results) + 1}/{self.total}] {stage.title}"
        if self.finished(stage, key):
            logger.info("%s: reused (%s)", step, self.marker(stage.name))
            result = StageResult(stage.name, stage.title, "reused", 0.0, key, stage.command)
        else:
            logger.info("%s\n    $ %s", step, " ".join([f"{k}={v}" for k, v in stage.env.items()] + stage.command))
            seconds = self.execute(stage, key)
            result = StageResult(stage.name, stage.title, "ran", seconds, key, stage.command)
            write_text_atomic(self.marker(stage.name), json.dumps(asdict(result), default=str, indent=1) + "\n")
        self.results.append(result)
        return result

    def execute(self, stage: Stage, key: str) -> float:
        """Run the command (output streams to the console and to ``.stages/<name>.log``); returns seconds."""
        self.prepare_workdir(stage, key)
        self.markers.mkdir(parents=True, exist_ok=True)
        log_path = self.marker(stage.name, "log")
        start = time.perf_counter()
        with open(log_path, "w") as log:
            proc = subprocess.Popen(stage.command, cwd=self.out_dir, env={**tool_env(), **stage.env},
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
            for line in proc.stdout:
                log.write(line)
                sys.stderr.write(f"    {line}" if line.strip() else line)
            code = proc.wait()
        if code != 0:
            raise DemoError(f"stage {stage.name} failed (exit {code}): {' '.join(stage.command)}; "
                            f"its output is in {log_path}")
        missing = [str(p) for p in stage.outputs if not p.exists()]
        if missing:
            raise DemoError(f"stage {stage.name} exited 0 but did not write {missing}; see {log_path}")
        return time.perf_counter() - start

    def prepare_workdir(self, stage: Stage, key: str) -> None:
        """Keep the workdir of an interrupted run with the same key (resume); clear it for a new key."""
        if stage.workdir is None:
            return
        started = self.marker(stage.name, "started")
        if stage.workdir.exists() and (not started.exists() or started.read_text().strip() != key):
            logger.info("clearing %s (made with other settings)", stage.workdir)
            shutil.rmtree(stage.workdir)
        write_text_atomic(started, key + "\n")


def corpus_stage(s: DemoSettings) -> Stage:
    corpus = s.out_dir / "corpus"
    return Stage("corpus", "demo corpus (FluidSynth + General MIDI soundfont)",
                 ["music-ssl-make-corpus", corpus, "--n-pieces", s.n_pieces, "--n-notes", s.n_notes,
                  "--piece-seconds", s.piece_seconds, "--seed", s.seed],
                 [corpus / "corpus.json"])


def manifest_stage(s: DemoSettings) -> Stage:
    manifest = s.out_dir / "manifest"
    return Stage("manifest", "fairseq manifest of the training audio",
                 ["music-ssl-manifest", s.out_dir / "corpus" / "audio" / "train", "--dest", manifest,
                  "--valid-percent", 0.1, "--seed", s.seed],
                 [manifest / "train.tsv", manifest / "valid.tsv"], workdir=manifest, upstream=("corpus",))


def kmeans_stage(s: DemoSettings, name: str, title: str, label_dir: Path, feature_args: list,
                 upstream: tuple[str, ...]) -> Stage:
    return Stage(name, title,
                 ["music-ssl-kmeans", "all", s.out_dir / "manifest", label_dir, *feature_args,
                  "--n-clusters", s.n_clusters, "--seed", s.seed, "--device", s.torch_device()],
                 [label_dir / "train.km", label_dir / "valid.km", label_dir / "dict.km.txt"],
                 workdir=label_dir, upstream=upstream)


def schedule_overrides(updates: int) -> list[str]:
    """The tiny configs' schedule scaled to ``updates`` (the rule in their YAML comments; hydra YAMLs cannot compute
    it): learning-rate warm-up over the first 10% of the updates (polynomial decay to 0 at ``max_update`` after it).
    music2vec's EMA anneal ends at ``max_update`` through the YAML's own interpolation. The training curves get
    about 30 logged points whatever the length (``log_interval``)."""
    return [f"optimization.max_update={updates}", f"lr_scheduler.warmup_updates={max(1, updates // 10)}",
            f"common.log_interval={max(1, updates // 30)}"]


def train_stage(s: DemoSettings, name: str, title: str, config: str, updates: int, overrides: list,
                upstream: tuple[str, ...], seeded_masks: bool = True) -> Stage:
    """fairseq-hydra-train of a tiny config; masks seeded from ``s.seed`` (``model.seeded_masks``), so a rerun with
    the same settings gives the same checkpoint on CPU. ``seeded_masks=False`` for a model without that option
    (music2vec2: its dataset draws data2vec 2.0's masks from torch's generator, which fairseq seeds from
    ``common.seed`` and the update count; reproducible since collation runs in the training thread,
    ``music_ssl.tasks.main_thread_collation``)."""
    save_dir = s.out_dir / "checkpoints" / name
    command = ["fairseq-hydra-train", "--config-dir", PRETRAIN_CONFIG_DIR, "--config-name", config,
               f"task.data={s.out_dir / 'manifest'}", f"checkpoint.save_dir={save_dir}",
               f"common.user_dir={PLUGIN_DIR}", *schedule_overrides(updates),
               f"common.seed={s.seed}", f"common.cpu={'false' if s.use_cuda() else 'true'}",
               *(["++model.seeded_masks=true"] if seeded_masks else []), f"hydra.run.dir={save_dir / 'hydra'}",
               *overrides]
    return Stage(name, title, command, [save_dir / "checkpoint_last.pt"], workdir=save_dir, upstream=upstream,
                 configs=(Path(PRETRAIN_CONFIG_DIR) / f"{config}.yaml",), env=s.training_env())


def probe_stage(s: DemoSettings, name: str, title: str, source: list[str], upstream: tuple[str, ...]) -> Stage:
    """``config/probe/demo.yaml`` (the corpus's key / instrument / note_instrument / pitch / beat CSV tasks) on one
    feature source."""
    out = s.out_dir / "probe" / name
    epochs = [] if s.probe_epochs is None else [f"protocol.train.max_epochs={s.probe_epochs}"]
    command = ["music-ssl-probe", "--config-dir", PROBE_CONFIG_DIR, "--config-name", "demo", f"name={name}",
               f"data_root={s.out_dir / 'corpus'}", f"out_dir={out}", f"cache_dir={s.out_dir / 'feature_cache'}",
               f"protocol.seeds=[{','.join(str(i) for i in range(s.probe_seeds))}]",
               f"device={s.torch_device()}", *epochs, *source]
    return Stage(name, title, command, [out / "results.json"], workdir=out, upstream=upstream,
                 configs=(Path(PROBE_CONFIG_DIR) / "demo.yaml",))


def checkpoint(s: DemoSettings, name: str) -> Path:
    return s.out_dir / "checkpoints" / name / "checkpoint_last.pt"


def plan(s: DemoSettings) -> list[Stage]:
    """Every stage of the demo, in order."""
    labels = s.out_dir / "labels"
    mfcc_dir, layer_dir = labels / f"mfcc39_k{s.n_clusters}", labels / f"layer{s.label_layer}_k{s.n_clusters}"
    hubert = checkpoint(s, "hubert_iter2")
    stages = [
        corpus_stage(s), manifest_stage(s),
        kmeans_stage(s, "mfcc_labels", "MFCC k-means labels (iteration 1, 100 Hz)", mfcc_dir,
                     ["--feature", "mfcc", "--n-mfcc", 13], ("manifest",)),
        train_stage(s, "hubert_iter1", "MusicHuBERT tiny pretraining, iteration 1 (MFCC labels)",
                    "music_hubert_tiny", s.hubert_updates,
                    [f"task.label_dir={mfcc_dir}"], ("mfcc_labels",)),
        kmeans_stage(s, "layer_labels", f"layer-{s.label_layer} k-means labels of iteration 1 (iteration 2, 50 Hz)",
                     layer_dir, ["--feature", "layer", "--checkpoint", checkpoint(s, "hubert_iter1"),
                                 "--layer", s.label_layer], ("hubert_iter1",)),
        train_stage(s, "hubert_iter2", "MusicHuBERT tiny pretraining, iteration 2 (layer labels)",
                    "music_hubert_tiny", s.hubert_updates,
                    [f"task.label_dir={layer_dir}"], ("layer_labels",)),
        train_stage(s, "music2vec", "music2vec tiny pretraining", "music2vec_tiny", s.music2vec_updates,
                    [], ("manifest",)),
    ]
    if s.music2vec2:
        stages.append(train_stage(s, "music2vec2", "music2vec2 tiny pretraining (data2vec 2.0 recipe)",
                                  "music2vec2_tiny", s.music2vec_updates, [], ("manifest",), seeded_masks=False))
    return stages + probe_stages(s, hubert)


def probe_stages(s: DemoSettings, hubert: Path) -> list[Stage]:
    """Probes of both checkpoints, a random init of each architecture and the two hand-crafted baselines (then
    music2vec2's checkpoint and random init with ``s.music2vec2``)."""
    m2v = checkpoint(s, "music2vec")
    sources = [
        ("probe_music_hubert", "probes: MusicHuBERT (iteration 2)", ["source.kind=checkpoint", f"source.path={hubert}"],
         ("corpus", "hubert_iter2")),
        ("probe_music2vec", "probes: music2vec", ["source.kind=checkpoint", f"source.path={m2v}"],
         ("corpus", "music2vec")),
        ("probe_random_hubert", "probes: random-init MusicHuBERT architecture",
         ["source.kind=checkpoint", f"source.path={hubert}", "source.random_init=true"], ("corpus", "hubert_iter2")),
        ("probe_random_music2vec", "probes: random-init music2vec architecture",
         ["source.kind=checkpoint", f"source.path={m2v}", "source.random_init=true"], ("corpus", "music2vec")),
        ("probe_chroma", "probes: CHROMA baseline (72-d)", ["source.kind=chroma"], ("corpus",)),
        ("probe_mfcc", "probes: MFCC baseline (120-d)", ["source.kind=mfcc"], ("corpus",)),
    ]
    if s.music2vec2:
        m2v2 = checkpoint(s, "music2vec2")
        sources += [
            ("probe_music2vec2", "probes: music2vec2", ["source.kind=checkpoint", f"source.path={m2v2}"],
             ("corpus", "music2vec2")),
            ("probe_random_music2vec2", "probes: random-init music2vec2 architecture",
             ["source.kind=checkpoint", f"source.path={m2v2}", "source.random_init=true"], ("corpus", "music2vec2")),
        ]
    return [probe_stage(s, name, title, source, upstream) for name, title, source, upstream in sources]


def run_demo(settings: DemoSettings) -> Path:
    """Run (or reuse) every stage, then write the report; returns the path of ``report.md``."""
    from music_ssl.demo.report import write_demo_report

    settings.torch_device()  # a device this machine lacks fails here, before any stage
    settings.out_dir = Path(settings.out_dir).expanduser().absolute()
    settings.out_dir.mkdir(parents=True, exist_ok=True)
    stages = plan(settings)
    runner = StageRunner(settings.out_dir, len(stages) + 1)
    start = time.perf_counter()
    for stage in stages:
        runner.run(stage)
    logger.info("[%d/%d] report", len(stages) + 1, len(stages) + 1)
    report = write_demo_report(settings, runner.results, time.perf_counter() - start)
    logger.info("report: %s", report)
    return report
