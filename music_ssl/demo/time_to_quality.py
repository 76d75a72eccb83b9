"""Time to quality: how much training wall time and compute a model needs to reach music2vec's probe scores.

The parts of ``benchmarks/time_to_quality.py`` (issue #24), on the demo corpus and with the demo's own stages:

* training (:func:`training_stage`): the demo's ``fairseq-hydra-train`` stage of a tiny config, seeded, with
  crop reading (:data:`CROP_READING`: checkpoints do not change the run), saving a checkpoint every ``interval``
  updates (``checkpoint.save_interval_updates``, all kept) and at every epoch end
  (``checkpoint.no_epoch_checkpoints=false``: fairseq names an update-interval save that falls on an epoch end
  ``checkpoint<epoch>.pt``, so without it that point would be missing);
* the points of a run (:func:`saved_points`): every saved checkpoint with its update count and fairseq's own
  training wall time at the save (``extra_state.previous_training_time``: seconds since the Trainer was built,
  validation and saving included) and the summed step time (``train_wall`` of the json log: forward, backward and
  optimizer only);
* probing (:func:`probe_checkpoint`): ``config/probe/demo.yaml`` (z-scored MuLaP MLP, every layer + weighted sum,
  the demo's seeds) through :func:`music_ssl.probe.run_probe`, on the tasks in :data:`TASKS`;
* the rule (:func:`reached`, :func:`first_reached`): a checkpoint has reached the reference quality on a task when
  its 95% CI overlaps the reference's or lies above it, i.e. ``mean + ci >= ref_mean - ref_ci`` (a NaN CI counts
  as 0); its time to quality is that of the first saved checkpoint that does;
* compute (:func:`training_step_flops`): model FLOPs of one real training step (fairseq Trainer ``train_step``:
  forward and backward of the loss, EMA teacher included) counted by ``torch.utils.flop_counter.FlopCounterMode``,
  and the seconds per update of the models measured interleaved in one process (:func:`interleaved_step_seconds`:
  a contention-robust per-update cost ratio).
"""
from __future__ import annotations

import json
import logging
import math
import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from music_ssl.core.atomic import atomic_path, write_text_atomic
from music_ssl.core.fingerprint import data_sha256
from music_ssl.core.resources import PRETRAIN_CONFIG_DIR, PROBE_CONFIG_DIR
from music_ssl.demo.pipeline import DemoSettings, Stage, train_stage
from music_ssl.demo.report import read_training_log

logger = logging.getLogger(__name__)

TASKS = ("key", "pitch", "beat")  # the tasks music2vec gains on after 1,000 updates (README, demo section)
MODELS = {"music2vec": "music2vec_tiny", "music2vec2": "music2vec2_tiny"}  # model -> tiny pretraining config
REFERENCE_MODEL = "music2vec"
SEEDED_MASKS = {"music2vec": True, "music2vec2": False}  # music2vec2 has no model.seeded_masks option
# Crops at offsets hashed from (seed, epoch, clip) and music2vec2's masks drawn per clip from the same hash (the base
# configs' data path): the validation at each save then draws nothing from the training crops' generators, so a run
# saving every 100 updates trains to the same weights as one straight through (tests/test_music2vec2.py).
CROP_READING = ("task.crop_reading=true",)
CHECKPOINT_NAME = re.compile(r"^checkpoint(\d+|_\d+_\d+)\.pt$")  # checkpoint<epoch>.pt, checkpoint_<e>_<u>.pt


@dataclass(frozen=True)
class Score:
    """A probe score: test metric (fraction, e.g. 0.41) and the half-width of its 95% CI over probe seeds."""

    mean: float
    ci: float

    @property
    def low(self) -> float:
        return self.mean - (0.0 if math.isnan(self.ci) else self.ci)

    @property
    def high(self) -> float:
        return self.mean + (0.0 if math.isnan(self.ci) else self.ci)


@dataclass
class Point:
    """One saved checkpoint of a run: ``updates``; ``wall_s`` fairseq's training wall time at the save (seconds);
    ``step_s`` the summed ``train_wall`` of the json log up to ``updates`` (seconds; NaN when not logged);
    ``scores`` task -> :class:`Score` once probed."""

    updates: int
    wall_s: float
    step_s: float
    path: Path
    scores: dict[str, Score] = field(default_factory=dict)


def reached(score: Score, reference: Score) -> bool:
    """The rule: ``score``'s 95% CI overlaps ``reference``'s or lies above it (``mean + ci >= ref_mean - ref_ci``)."""
    return score.high >= reference.low


def first_reached(points: list[Point], reference: dict[str, Score], tasks=TASKS) -> Point | None:
    """The first point (fewest updates) that has reached ``reference`` on every task of ``tasks``, or None."""
    for point in sorted(points, key=lambda p: p.updates):
        if all(task in point.scores and reached(point.scores[task], reference[task]) for task in tasks):
            return point
    return None


def log_interval_for(interval: int) -> int:
    """A json-log interval dividing the checkpoint interval (about 5 log lines per interval), so that the summed
    ``train_wall`` at each checkpoint is exact."""
    target = max(1, interval // 5)
    return max(d for d in range(1, target + 1) if interval % d == 0)


def variant_tag(overrides=()) -> str:
    """``""`` for a model's shipped tiny config, else ``_v`` + 8 hex digits of its extra hydra ``overrides`` (a
    recipe variant gets folders of its own, so the shipped runs are kept)."""
    return f"_v{data_sha256(' '.join(overrides))[:8]}" if overrides else ""


def run_name(model: str, seed: int, overrides=()) -> str:
    return f"ttq_{model}{variant_tag(overrides)}_seed{seed}"


def training_stage(settings: DemoSettings, model: str, seed: int, updates: int, interval: int,
                   overrides=()) -> Stage:
    """The demo's training stage of ``model``'s tiny config (with hydra ``overrides`` after ours) with training
    seed ``seed`` (the corpus keeps ``settings.seed``), saving every ``interval`` updates and at epoch ends, all
    kept; folder ``<out_dir>/checkpoints/<run_name>``."""
    ours = [f"checkpoint.save_interval_updates={interval}", "checkpoint.keep_interval_updates=-1",
            "checkpoint.no_epoch_checkpoints=false", f"common.log_interval={log_interval_for(interval)}",
            *CROP_READING]
    variant = f" ({' '.join(overrides)})" if overrides else ""
    return train_stage(replace(settings, seed=seed), run_name(model, seed, overrides),
                       f"{model}{variant} tiny pretraining, seed {seed}", MODELS[model], updates,
                       [*ours, *overrides], ("manifest",), seeded_masks=SEEDED_MASKS[model])


def checkpoint_state(path: Path) -> tuple[int, float]:
    """(updates, fairseq's training wall seconds at the save) of a fairseq checkpoint (read memory-mapped)."""
    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    updates = int(state["optimizer_history"][-1]["num_updates"])
    return updates, float(state["extra_state"]["previous_training_time"])


def step_seconds(log: Path, updates: int) -> float:
    """Summed ``train_wall`` (seconds in ``train_step``, logged rounded to whole seconds) of the json log's
    ``train_inner`` records up to ``updates``; NaN when the log has none up to there or the log intervals do not
    end at ``updates``. A run resumed from its last checkpoint logs the redone updates again: the last record of
    each update count is the one kept."""
    by_update = {r["num_updates"]: r for r in read_training_log(log)["train"] if "train_wall" in r}
    if updates not in by_update:
        return math.nan
    return sum(r["train_wall"] for n, r in by_update.items() if n <= updates)


def saved_points(save_dir: Path, interval: int, updates: int) -> list[Point]:
    """Every saved checkpoint of ``save_dir`` at a multiple of ``interval`` updates (up to ``updates``), one per
    update count, sorted; raises FileNotFoundError when there is none."""
    log = save_dir / "hydra" / "hydra_train.log"
    points: dict[int, Point] = {}
    for path in sorted(save_dir.glob("checkpoint*.pt")):
        if not CHECKPOINT_NAME.match(path.name):
            continue
        n, wall = checkpoint_state(path)
        if n % interval == 0 and 0 < n <= updates and n not in points:
            points[n] = Point(n, wall, step_seconds(log, n) if log.exists() else math.nan, path)
    if not points:
        raise FileNotFoundError(f"{save_dir}: no checkpoint at a multiple of {interval} updates")
    return [points[n] for n in sorted(points)]


def probe_config(settings: DemoSettings, checkpoint: Path, out_dir: Path, tasks=TASKS, layers: str | None = None
                 ) -> dict:
    """``config/probe/demo.yaml`` as the demo runs it (its seeds, epochs and device) on ``checkpoint``, restricted
    to ``tasks``; ``layers``: ``protocol.layers`` (None: the YAML's ``all+sum``; e.g. ``sum``: the weighted sum
    alone, 6× fewer probes on the tiny models); a plain dict for :func:`music_ssl.probe.run_probe`."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from music_ssl.probe.config import register_schema

    epochs = [] if settings.probe_epochs is None else [f"protocol.train.max_epochs={settings.probe_epochs}"]
    overrides = [f"name={checkpoint.parent.name}/{checkpoint.stem}", f"data_root={settings.out_dir / 'corpus'}",
                 f"out_dir={out_dir}", "cache_dir=null", "progress=false",
                 f"protocol.seeds=[{','.join(str(i) for i in range(settings.probe_seeds))}]",
                 f"device={settings.torch_device()}", "source.kind=checkpoint", f"source.path={checkpoint}", *epochs,
                 *([f"protocol.layers={layers}"] if layers else [])]
    register_schema()
    with initialize_config_dir(config_dir=str(PROBE_CONFIG_DIR), version_base=None):
        cfg = OmegaConf.to_container(compose(config_name="demo", overrides=overrides), resolve=True)
    cfg["tasks"] = [t for t in cfg["tasks"] if Path(t["path"]).stem in tasks]
    missing = set(tasks) - {Path(t["path"]).stem for t in cfg["tasks"]}
    if missing:
        raise ValueError(f"config/probe/demo.yaml has no task {sorted(missing)}")
    return cfg


def selected_scores(results: dict) -> dict[str, Score]:
    """task -> :class:`Score` of the hidden state chosen on validation, from a probe run's ``results.json``."""
    return {r["task"]: Score(float(r["test_mean"]), float(r["test_ci95"]))
            for r in results["selected"] if r["best_on_valid"]}


def cached_scores(out_dir: Path, key: str, tasks=TASKS) -> dict[str, Score] | None:
    """The scores an earlier :func:`probe_checkpoint` wrote to ``out_dir/ttq.json`` with the same ``key``, or None."""
    try:
        done = json.loads((out_dir / "ttq.json").read_text())
        if done["key"] == key:
            return {t: Score(*done["scores"][t]) for t in tasks}
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def probe_checkpoint(settings: DemoSettings, point: Point, out_dir: Path, key: str, tasks=TASKS,
                     layers: str | None = None) -> dict[str, Score]:
    """Probe ``point``'s checkpoint into ``out_dir`` (reused when ``out_dir/ttq.json`` holds the same ``key``:
    the training stage's key, the checkpoint's update count and the probed layers); returns its scores."""
    marker = out_dir / "ttq.json"
    cached = cached_scores(out_dir, key, tasks)
    if cached is not None:
        return cached
    from music_ssl.probe import run_probe

    start = time.perf_counter()
    scores = selected_scores(run_probe(probe_config(settings, point.path, out_dir, tasks, layers)))
    logger.info("probed %s (%d updates) in %.0f s: %s", point.path, point.updates, time.perf_counter() - start,
                ", ".join(f"{t} {100 * s.mean:.1f} ± {100 * s.ci:.1f}" for t, s in scores.items()))
    write_text_atomic(marker, json.dumps({"key": key, "scores": {t: [s.mean, s.ci] for t, s in scores.items()}}))
    return scores


# ---- compute: FLOPs and seconds of one training step ----

def trainer_for(config: str, manifest_dir: Path, seed: int = 1, overrides=(), cpu: bool = True):
    """A fairseq Trainer (one process; on the CPU, or the current CUDA device with ``cpu=False``) of the pretraining
    ``config`` on the manifest folder ``manifest_dir`` (``train.tsv``), as ``fairseq-hydra-train`` builds it;
    ``overrides``: hydra overrides after ours (e.g. ``distributed_training.distributed_world_size=1`` for a base
    config)."""
    from fairseq import tasks as fairseq_tasks
    from fairseq.dataclass.initialize import add_defaults, hydra_init
    from fairseq.dataclass.utils import omegaconf_no_object_check
    from fairseq.trainer import Trainer
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from music_ssl.core.resources import PLUGIN_DIR

    hydra_init(config)
    with initialize_config_dir(config_dir=str(PRETRAIN_CONFIG_DIR), version_base="1.1"):
        cfg = compose(config_name=config, overrides=[f"task.data={manifest_dir}", f"common.user_dir={PLUGIN_DIR}",
                                                     f"common.seed={seed}", f"common.cpu={str(cpu).lower()}",
                                                     *overrides])
    add_defaults(cfg)  # the registered dataclasses' defaults, as fairseq-hydra-train (music2vec2: ${model.num_heads})
    with omegaconf_no_object_check():
        cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))
    torch.manual_seed(seed)
    task = fairseq_tasks.setup_task(cfg.task)
    model, criterion = task.build_model(cfg.model), task.build_criterion(cfg.criterion)
    return Trainer(cfg, task, model, criterion)


def demo_batches(trainer, count: int, clips: int | None = None, full_only: bool = True) -> list[dict]:
    """``count`` collated training batches of the demo size (``dataset.max_tokens``) from the real dataset, or of
    ``clips`` clips each; cycled over the dataset's batches. ``full_only``: only the batches with the most clips
    (False: every batch fairseq makes, e.g. of a corpus of mixed lengths)."""
    task = trainer.task
    task.load_dataset("train")
    dataset = task.dataset("train")
    order = dataset.ordered_indices()
    if clips is None:
        groups = dataset.batch_by_size(order, max_tokens=trainer.cfg.dataset.max_tokens,
                                       required_batch_size_multiple=1)
        if full_only:
            groups = [g for g in groups if len(g) == max(len(h) for h in groups)]
    else:
        groups = [order[i: i + clips] for i in range(0, len(order) - clips + 1, clips)]
    return [dataset.collater([dataset[int(i)] for i in groups[k % len(groups)]]) for k in range(count)]


def batch_audio_seconds(sample: dict, sample_rate: int = 16000) -> float:
    """Seconds of real (unpadded) audio in a collated batch."""
    source = sample["net_input"]["source"]  # (B, S)
    padding = sample["net_input"].get("padding_mask")
    samples = source.numel() if padding is None else int((~padding).sum())
    return samples / sample_rate


class _TotalOnly:
    """Stand-in for ``FlopCounterMode``'s module tracker: every FLOP is counted under ``Global`` only. The tracker
    attributes FLOPs to modules with forward and backward hooks, and its backward hook fails on the inputs of
    data2vec's no-grad EMA teacher (torch 2.11: "Expected gradient function to be set"); the total needs no
    attribution."""

    parents = {"Global"}

    def __enter__(self):
        return self

    def __exit__(self, *args):
        return None


def count_flops(fn) -> float:
    """FLOPs (matmuls, convolutions, attention: torch's FLOP registry) of ``fn()``, backward passes inside it
    included."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    counter.mod_tracker = _TotalOnly()
    with counter:
        fn()
    return float(counter.get_total_flops())


def training_step_flops(trainer, sample: dict) -> dict:
    """Model FLOPs of one real training step (``trainer.train_step``: the loss's forward, its backward, the EMA
    teacher's forward), counted by torch's ``FlopCounterMode`` (:func:`count_flops`; elementwise ops and the
    optimizer are not counted). Returns ``{"flops", "audio_seconds", "flops_per_audio_second"}``."""
    flops = count_flops(lambda: trainer.train_step([sample]))
    seconds = batch_audio_seconds(sample)
    return {"flops": flops, "audio_seconds": seconds, "flops_per_audio_second": flops / seconds}


def feature_encoder_flops(model, sample: dict) -> float:
    """FLOPs of the conv feature encoder's forward and backward on the batch's waveforms (B, S): the part of a
    training step that data2vec 2.0's recipe does not make cheaper (both models encode each clip once; the student's
    multi-mask copies and the teacher start after it). Parameter gradients are cleared afterwards."""
    encoder = model.feature_extractor  # waveform (B, S) -> (B, C, T)
    flops = count_flops(lambda: encoder(sample["net_input"]["source"]).float().sum().backward())
    model.zero_grad(set_to_none=True)
    return flops


def interleaved_step_seconds(trainers: dict, samples: dict, rounds: int = 3, steps: int = 5) -> dict[str, float]:
    """Seconds per update of each trainer, timed in ``rounds`` alternating rounds of ``steps`` updates each (one
    untimed warm-up update first): a load on the machine that varies slowly weighs on every model alike.
    ``samples``: name -> list of batches (cycled)."""
    for name, trainer in trainers.items():
        trainer.train_step([samples[name][0]])
    total = dict.fromkeys(trainers, 0.0)
    for r in range(rounds):
        for name, trainer in trainers.items():
            start = time.perf_counter()
            for k in range(steps):
                trainer.train_step([samples[name][(r * steps + k) % len(samples[name])]])
            total[name] += time.perf_counter() - start
    return {name: seconds / (rounds * steps) for name, seconds in total.items()}


def compute_costs(manifest_dir: Path, models=tuple(MODELS), seed: int = 1, timing_rounds: int = 3,
                  timing_steps: int = 5, overrides: dict | None = None) -> dict[str, dict]:
    """Per model: FLOPs per update and per audio-second (one demo-sized batch, second step: the first builds the
    EMA teacher), the conv feature encoder's share of them (:func:`feature_encoder_flops`) and seconds per update
    measured interleaved with the other models. ``overrides``: model -> hydra overrides of its tiny config."""
    trainers = {m: trainer_for(MODELS[m], manifest_dir, seed, (overrides or {}).get(m, ())) for m in models}
    samples = {m: demo_batches(t, 4) for m, t in trainers.items()}
    costs = {}
    for m, trainer in trainers.items():
        trainer.train_step([samples[m][0]])  # the first step makes the EMA teacher: count a steady one
        costs[m] = training_step_flops(trainer, samples[m][1])
        costs[m]["feature_encoder_share"] = feature_encoder_flops(trainer.model, samples[m][1]) / costs[m]["flops"]
        costs[m]["clips_per_batch"] = int(samples[m][1]["net_input"]["source"].size(0))
    if timing_rounds > 0:
        for m, seconds in interleaved_step_seconds(trainers, samples, timing_rounds, timing_steps).items():
            costs[m]["seconds_per_update"] = seconds
    return costs


# ---- the result: time to quality per model, seed and task; table and plot ----

def time_to_quality(curves: dict, reference: dict[str, Score], tasks=TASKS) -> dict:
    """``curves``: model -> [Point...] (probed). Per model and task (and ``all``: every task at one checkpoint):
    the first point reaching ``reference`` as ``{"updates", "wall_s", "step_s"}``, or None."""
    out = {}
    for model, points in curves.items():
        out[model] = {}
        for task in (*tasks, "all"):
            point = first_reached(points, reference, tasks if task == "all" else (task,))
            out[model][task] = None if point is None else {"updates": point.updates, "wall_s": point.wall_s,
                                                           "step_s": point.step_s}
    return out


def ratio(numerator: dict | None, denominator: dict | None, key: str = "wall_s") -> float:
    """numerator[key] / denominator[key]; NaN when either did not reach or the value is missing."""
    if not numerator or not denominator or not denominator.get(key) or math.isnan(denominator[key]):
        return math.nan
    return numerator[key] / denominator[key]


def ratios(hits: dict, reference_point: dict, costs: dict, candidate: str = "music2vec2",
           tasks=TASKS) -> dict[str, dict[str, float]]:
    """Per task (and ``all``), candidate ÷ reference model:

    * ``wall``: the candidate's fairseq wall time to quality ÷ the reference run's at the reference update count
      (the time it took to make the scores being matched; the issue's target: ≤ 1/3);
    * ``step``: the same with the summed step times (``train_wall``: no validation, saving or start-up);
    * ``wall_vs_first``: ÷ the reference run's own first checkpoint reaching its final scores by the same rule
      (stricter: that run needs fewer updates than the reference count when its curve is flat at the end);
    * ``updates``: candidate updates to quality ÷ the reference update count (the CPU update ratio that
      ``benchmarks/device_run.py`` multiplies by the GPU seconds-per-update ratio);
    * ``cost_model``: ``updates`` × the candidate's interleaved seconds per update ÷ the reference model's (robust to
      a load on the machine that changed between the training runs).
    """
    out = {}
    spu = {m: costs.get(m, {}).get("seconds_per_update") for m in (REFERENCE_MODEL, candidate)}
    for task in (*tasks, "all"):
        hit = hits[candidate][task]
        modelled = math.nan
        if hit and spu[REFERENCE_MODEL] and spu[candidate]:
            modelled = hit["updates"] * spu[candidate] / (reference_point["updates"] * spu[REFERENCE_MODEL])
        out[task] = {"wall": ratio(hit, reference_point), "step": ratio(hit, reference_point, "step_s"),
                     "wall_vs_first": ratio(hit, hits[REFERENCE_MODEL][task]),
                     "updates": ratio(hit, reference_point, "updates"), "cost_model": modelled}
    return out


def fmt_score(score: Score) -> str:
    return f"{100 * score.mean:.1f} ± {100 * (0 if math.isnan(score.ci) else score.ci):.1f}"


def fmt_reach(hit: dict | None) -> str:
    return "not reached" if hit is None else f"{hit['updates']} upd, {hit['wall_s']:.0f} s"


def markdown_table(results: dict, tasks=TASKS, candidate: str = "music2vec2") -> str:
    """Markdown: a row per seed and task (and ``all``: every task at one checkpoint): the reference score, where
    each model first reaches it (updates, fairseq wall seconds) and the ratios of :func:`ratios`."""
    ref_updates = results["reference_updates"]
    lines = [f"| seed | task | music2vec@{ref_updates} (×100) | music2vec reaches at | {candidate} reaches at | "
             f"wall ratio (vs music2vec@{ref_updates}) | step-time ratio | vs music2vec's first reach | "
             "update ratio | cost-model ratio |", "|---|---|---|---|---|---|---|---|---|---|"]
    for seed, run in results["seeds"].items():
        for task in (*tasks, "all"):
            ref = "—" if task == "all" else fmt_score(Score(*run["reference"][task]))
            hit, r = run["reached"], run["ratios"][task]
            lines.append(f"| {seed} | {task} | {ref} | {fmt_reach(hit[REFERENCE_MODEL][task])} | "
                         f"{fmt_reach(hit[candidate][task])} | **{fmt_ratio(r['wall'])}** | {fmt_ratio(r['step'])} | "
                         f"{fmt_ratio(r['wall_vs_first'])} | {fmt_ratio(r['updates'])} | "
                         f"{fmt_ratio(r['cost_model'])} |")
    return "\n".join(lines) + "\n"


def fmt_ratio(value: float) -> str:
    return "—" if value is None or math.isnan(value) else f"{value:.2f}"


def costs_table(costs: dict) -> str:
    lines = ["| model | clips / batch | audio-s / batch | GFLOP / update | GFLOP / audio-s | conv encoder share "
             "| s / update (interleaved) |", "|---|---|---|---|---|---|---|"]
    for model, c in costs.items():
        sec, share = c.get("seconds_per_update"), c.get("feature_encoder_share")
        lines.append(f"| {model} | {c['clips_per_batch']} | {c['audio_seconds']:.1f} | {c['flops'] / 1e9:.2f} | "
                     f"{c['flops_per_audio_second'] / 1e9:.3f} | {'—' if share is None else f'{share:.0%}'} | "
                     f"{'—' if sec is None else f'{sec:.3f}'} |")
    return "\n".join(lines) + "\n"


def plot_curves(path: Path, curves_by_seed: dict, references: dict, tasks=TASKS) -> None:
    """Probe score (test ×100, 95% CI bars) vs training wall seconds, one panel per task, a line per model and seed;
    the reference score (music2vec at the reference update count) as a band per seed."""
    from music_ssl.demo.report import pyplot, save_figure

    plt = pyplot()
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.4 * len(tasks), 3.5), squeeze=False)
    styles = {seed: style for seed, style in zip(curves_by_seed, ("o-", "s--", "^:", "d-."))}
    for ax, task in zip(axes[0], tasks):
        for c, model in enumerate(MODELS):
            for seed, curves in curves_by_seed.items():
                points = [p for p in curves.get(model, []) if task in p.scores]
                if not points:
                    continue
                ax.errorbar([p.wall_s for p in points], [100 * p.scores[task].mean for p in points],
                            yerr=[100 * (0 if math.isnan(p.scores[task].ci) else p.scores[task].ci) for p in points],
                            fmt=styles[seed], color=f"C{c}", markersize=3, capsize=2, linewidth=1,
                            label=f"{model}, seed {seed}")
        for seed, ref in references.items():
            score = Score(*ref[task])
            ax.axhspan(100 * score.low, 100 * score.high, color="0.5", alpha=0.12)
        ax.set(title=task, xlabel="training wall time (s)", ylabel="test score ×100")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    save_figure(fig, path)


def write_json(path: Path, data: dict) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(data, indent=1, default=str))


# ---- the whole benchmark ----

@dataclass
class TimeToQualitySettings:
    """Sizes of the benchmark (issue #24's defaults).

    Attributes:
        demo: the corpus, probe seeds / epochs and device (:class:`DemoSettings`; ``demo.seed`` is the corpus seed,
            ``demo.out_dir`` the folder: a ``make demo`` folder reuses its corpus and manifest).
        seeds: training seeds; each model trains once per seed.
        updates: updates per training run; music2vec's scores at this count are the reference (default 1000).
        interval: checkpoint (and probe) every this many updates (default 100).
        models: the reference model first, then the candidate.
        reference_interval: probe the reference model's checkpoints every this many updates (a multiple of
            ``interval``; None = ``interval``); its checkpoint at ``updates`` is always probed.
        timing_rounds / timing_steps: the interleaved seconds-per-update measurement (0 rounds: skip it).
        probe_layers: ``protocol.layers`` of the probes (None: config/probe/demo.yaml's ``all+sum``, the demo's;
            ``sum``: the weighted sum of all states alone, 6× fewer probes on the tiny models).
        probe_budget_s: start no new probe after this many seconds of probing per seed (None: probe every
            checkpoint); probes made earlier are always used, and the checkpoints left unprobed are listed.
        train_only: run the training stages and stop (e.g. the next seed's runs while this one is probed).
        candidate_overrides: hydra overrides of the candidate's tiny config (a recipe variant, e.g.
            ``model.clone_batch=8``): its runs and the report get folders of their own (:func:`variant_tag`).
    """

    demo: DemoSettings = field(default_factory=DemoSettings)
    seeds: tuple[int, ...] = (1, 2)
    updates: int = 1000
    interval: int = 100
    models: tuple[str, ...] = (REFERENCE_MODEL, "music2vec2")
    reference_interval: int | None = None
    timing_rounds: int = 3
    timing_steps: int = 5
    probe_layers: str | None = None
    probe_budget_s: float | None = None
    train_only: bool = False
    candidate_overrides: tuple[str, ...] = ()

    def overrides(self, model: str) -> tuple[str, ...]:
        """The hydra overrides of ``model``'s runs: the candidate's variant, none for the reference."""
        return self.candidate_overrides if model == self.models[-1] else ()

    @property
    def out(self) -> Path:
        return Path(self.demo.out_dir) / f"time_to_quality{variant_tag(self.candidate_overrides)}"


def quick_settings(out_dir: Path) -> TimeToQualitySettings:
    """The smoke-test size: a 24-clip corpus, 4 updates checkpointed every 2, one seed, 2 probe seeds of 3 epochs."""
    demo = DemoSettings(out_dir=out_dir, n_pieces=12, n_notes=12, piece_seconds=4.0, probe_seeds=2, probe_epochs=3,
                        device="cpu")
    return TimeToQualitySettings(demo=demo, seeds=(1,), updates=4, interval=2, timing_rounds=1, timing_steps=1)


def train_all(t: TimeToQualitySettings, seeds=None) -> dict[tuple[str, int], str]:
    """Corpus, manifest and the training runs of ``seeds`` (default: all; the demo's stages, reused when
    finished); returns (model, seed) -> the training stage's key."""
    from music_ssl.demo.pipeline import StageRunner, corpus_stage, manifest_stage

    stages = [corpus_stage(t.demo), manifest_stage(t.demo)]
    runs = [(m, seed) for seed in (t.seeds if seeds is None else seeds) for m in t.models]
    stages += [training_stage(t.demo, m, seed, t.updates, t.interval, t.overrides(m)) for m, seed in runs]
    runner = StageRunner(Path(t.demo.out_dir), len(stages))
    for stage in stages:
        runner.run(stage)
    return {(m, seed): runner.keys[run_name(m, seed, t.overrides(m))] for m, seed in runs}


def probe_order(points_by_run: dict, t: TimeToQualitySettings) -> list[tuple]:
    """(run, point) pairs to probe, most needed first: the reference model's last checkpoint (the scores to reach),
    the candidate's checkpoints in update order, then the reference model's others (every ``reference_interval``)."""
    every = t.reference_interval or t.interval
    first, later = [], []
    for (model, seed), points in points_by_run.items():
        for point in points:
            if model != t.models[0]:
                first.append(((model, seed), point))
            elif point.updates == t.updates:
                first.insert(0, ((model, seed), point))
            elif point.updates % every == 0:
                later.append(((model, seed), point))
    return first + later


def probe_all(t: TimeToQualitySettings, keys: dict) -> dict[int, dict[str, list[Point]]]:
    """seed -> model -> probed points (every saved checkpoint at a multiple of ``interval``; the reference model's
    at multiples of ``reference_interval``), probed in :func:`probe_order`."""
    points_by_run = {(m, seed): saved_points(Path(t.demo.out_dir) / "checkpoints" / run_name(m, seed, t.overrides(m)),
                                             t.interval, t.updates) for m, seed in keys}
    start, skipped = time.perf_counter(), []
    for (model, seed), point in probe_order(points_by_run, t):
        layers = t.probe_layers or "all+sum"
        out = Path(t.demo.out_dir) / "probe" / run_name(model, seed, t.overrides(model)) / f"update{point.updates}_{layers}"
        key = f"{keys[(model, seed)]}:{point.updates}:{layers}"
        if t.probe_budget_s is not None and time.perf_counter() - start > t.probe_budget_s:
            point.scores = cached_scores(out, key) or {}
            if not point.scores:
                skipped.append(f"{model} seed {seed} @ {point.updates}")
            continue
        point.scores = probe_checkpoint(t.demo, point, out, key, layers=t.probe_layers)
    if skipped:
        logger.warning("probe budget (%s s) spent: not probed: %s", t.probe_budget_s, ", ".join(skipped))
    curves: dict[int, dict[str, list[Point]]] = {}
    for (model, seed), points in points_by_run.items():
        curves.setdefault(seed, {})[model] = [p for p in points if p.scores]
    return curves


def point_dict(point: Point) -> dict:
    return {"updates": point.updates, "wall_s": point.wall_s, "step_s": point.step_s, "checkpoint": str(point.path),
            "scores": {task: [s.mean, s.ci] for task, s in point.scores.items()}}


def summarise(t: TimeToQualitySettings, curves: dict, costs: dict) -> dict:
    """The results: per seed the reference scores, the probed points, the first points reaching the reference
    (:func:`time_to_quality`) and the ratios (:func:`ratios`); and the compute costs."""
    reference_model, candidate = t.models[0], t.models[-1]
    results = {"reference_model": reference_model, "candidate": candidate, "reference_updates": t.updates,
               "interval": t.interval, "tasks": list(TASKS), "costs": costs,
               "rule": "reached = the checkpoint's 95% CI overlaps the reference's or lies above it "
                       "(mean + ci >= ref_mean - ref_ci); time to quality = the first saved checkpoint reaching it",
               "seeds": {}}
    for seed, by_model in curves.items():
        ref_point = next((p for p in by_model[reference_model] if p.updates == t.updates and p.scores), None)
        if ref_point is None:
            raise FileNotFoundError(f"{reference_model} seed {seed}: no probed checkpoint at {t.updates} updates "
                                    "(the reference; raise --probe-budget-s)")
        hits = time_to_quality(by_model, ref_point.scores)
        ref = {"updates": ref_point.updates, "wall_s": ref_point.wall_s, "step_s": ref_point.step_s}
        results["seeds"][seed] = {
            "reference": {task: [s.mean, s.ci] for task, s in ref_point.scores.items() if task in TASKS},
            "reference_point": ref, "reached": hits, "ratios": ratios(hits, ref, costs, candidate),
            "points": {m: [point_dict(p) for p in points] for m, points in by_model.items()}}
    return results


def verdict_lines(results: dict, target: float = 1 / 3) -> list[str]:
    """One line per seed and task: candidate ÷ reference wall time to quality and whether it meets ``target``."""
    lines = []
    for seed, run in results["seeds"].items():
        for task, r in run["ratios"].items():
            value = r["wall"]
            met = "not reached" if math.isnan(value) else ("met" if value <= target else "NOT met")
            lines.append(f"seed {seed} {task}: {results['candidate']} / {results['reference_model']} wall time to "
                         f"quality = {fmt_ratio(value)} (step time {fmt_ratio(r['step'])}, cost model "
                         f"{fmt_ratio(r['cost_model'])}; target <= {target:.2f}: {met})")
    return lines


def report_text(t: TimeToQualitySettings, results: dict) -> str:
    return "\n".join([
        "# Time to quality: music2vec2 vs music2vec (tiny, demo corpus)", "",
        f"{t.updates} updates per run, a checkpoint every {t.interval}, training seeds {list(t.seeds)}; probes: "
        f"config/probe/demo.yaml (z-scored MuLaP MLP, {t.demo.probe_seeds} probe seeds, layers "
        f"`{t.probe_layers or 'all+sum'}`, test score of the state chosen on validation, mean ± 95% CI). Wall time: fairseq's training time at each "
        "save (validation and saving included); step time: the summed `train_wall` of its json log.", "",
        *([f"music2vec2's recipe variant: `{' '.join(t.candidate_overrides)}`.", ""] if t.candidate_overrides else []),
        f"Rule: {results['rule']}.", "", markdown_table(results), "", "## Compute per update", "",
        "FLOPs of one training step (Trainer.train_step: forward + backward + EMA teacher; torch FlopCounterMode: "
        "matmuls and convolutions) on one demo-sized batch; seconds per update timed interleaved in one process.",
        "", costs_table(results["costs"]), "", "![curves](curves.png)", "",
        "\n".join(f"- {line}" for line in verdict_lines(results)), "",
        "Probed checkpoints (updates): " + "; ".join(
            f"seed {seed} {m}: {[p['updates'] for p in points]}" for seed, run in results["seeds"].items()
            for m, points in run["points"].items()), ""])


def run_benchmark(t: TimeToQualitySettings) -> dict:
    """Train, probe, measure and write ``<out_dir>/time_to_quality/{results.json, report.md, curves.png}``;
    returns the results (see :func:`summarise`)."""
    t.demo.torch_device()
    t.demo.out_dir = Path(t.demo.out_dir).expanduser().absolute()
    t.demo.out_dir.mkdir(parents=True, exist_ok=True)
    if t.models[0] != REFERENCE_MODEL or any(m not in MODELS for m in t.models):
        raise ValueError(f"models must start with {REFERENCE_MODEL} and be among {sorted(MODELS)}")
    if t.train_only:
        train_all(t)
        return {}
    curves = {}
    for seed in t.seeds:  # seed by seed: a run cut short still leaves whole seeds probed
        curves.update(probe_all(t, train_all(t, (seed,))))
    logger.info("FLOPs and interleaved seconds per update")
    costs = compute_costs(t.demo.out_dir / "manifest", t.models, t.seeds[0], t.timing_rounds, t.timing_steps,
                          {m: t.overrides(m) for m in t.models})
    results = summarise(t, curves, costs)
    t.out.mkdir(parents=True, exist_ok=True)
    write_json(t.out / "results.json", results)
    plot_curves(t.out / "curves.png", curves, {seed: run["reference"] for seed, run in results["seeds"].items()})
    write_text_atomic(t.out / "report.md", report_text(t, results))
    return results
