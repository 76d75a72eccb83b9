"""Run a probe config end to end: source -> features (cached) -> probes per task -> selection -> report.

The config schema (keys, defaults, help) is ``probe.config.ProbeRunConfig``; ``music_ssl/cli/probe.py`` composes it
with hydra, :func:`run_probe` also takes a plain dict.

Task rules: the protocol's ``rules`` for the task's name or type (pooling, encoding, window → song aggregation,
beat scoring and training, split) are applied under the task entry's own options (an entry's explicit key wins).
Beat training crops (``beat_crop_encode``, ``beat_crop_hop_seconds``: ``assemble.BeatCrops``) are taken out of
them here: with ``beat_crop_encode: window`` the train files are encoded as crops alone and valid/test whole.
Train settings: the preset's, its ``per_task`` entry for the task (MARBLE's per-task schedules), then the run's
``protocol.train``; the grid likewise (``per_task`` probe overrides, e.g. MuLaP's per-task weight decay). Head
settings (which states the weighted sum reads, its start, input dropout): the preset's, ``protocol.sum_states`` and
``protocol.head``. Each task's info in ``results.json`` records the settings, head, summed states, encoding and,
for beat tracking, which training ran.

Selection (JukeMIR's): for each layer option (hidden state i, or the weighted sum) the config with the best
mean validation score over seeds is chosen — the batched early-stopping metric, except for beat tracking,
where configs are chosen on the validation beat F-measure after the DBN (one decode per probe) — and its seeds
are evaluated on valid and test with the field's libraries; test metrics are reported as mean ± 95% CI over
seeds. The layer option with the best library validation metric is marked ``best_on_valid``. When
``source.reference`` names a published model + protocol, each row also carries the paper's number.
"""
import logging
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from ..core.atomic import check_writable
from ..core.fingerprint import json_sha256
from ..core.device import resolve_device
from .assemble import BeatCrops, assemble
from .config import resolve_config
from .errors import ProbeConfigError, ProbeDataError
from .features import build_source, load_features
from .features.cache import CACHE_FIX, FeatureSet, takes_encoding
from .protocols import WEIGHTED_SUM, TrainSettings, expand, get_protocol, resolve_layers, with_overrides
from .published import attach_published, check_reference
from .report import library_versions, mean_ci, write_report
from .datasets import load_probe_dataset, task_type_of
from .datasets.dataset import SPLITS
from .trainer import EVAL_SPLITS, train_batched, train_sequential

logger = logging.getLogger(__name__)


def train_settings(preset: TrainSettings, overrides: dict) -> TrainSettings:
    """The preset's settings with ``protocol.train`` overrides applied (unknown keys raise)."""
    return with_overrides(preset, overrides, "protocol.train")


def head_settings(protocol, cfg: dict):
    """The preset's ``HeadSettings`` with ``protocol.sum_states`` and ``protocol.head`` overrides applied."""
    overrides = dict(cfg["protocol"].get("head") or {})
    if cfg["protocol"].get("sum_states"):
        overrides["sum_states"] = cfg["protocol"]["sum_states"]
    return with_overrides(protocol.head, overrides, "protocol.head")


def config_text(config) -> str:
    """One probe config as a short string (the 'config' column of the tables)."""
    kind = f"mlp{config.hidden}" if config.hidden else "linear"
    return (f"{kind} lr={config.lr:g} bs={config.batch_size} dropout={config.dropout:g} l2={config.l2:g} "
            f"std={int(config.standardize)}")


def _layer_name(data, layer: int) -> str:
    return "weighted_sum" if layer == WEIGHTED_SUM else data.layer_names[layer]


def _batched_test_metric(data, result) -> np.ndarray:
    """(P,) batched primary metric of every probe on the test split (beat: frame AP), in chunks of 64."""
    split = data.splits["test"]
    out = []
    for start in range(0, len(result.configs), 64):
        logits = torch.as_tensor(result.logits["test"][start:start + 64], device=split.y.device)
        out.append(data.type.batched_primary(logits, split).float().cpu().numpy())
    return np.concatenate(out)


def _selected_row(data, result, members: list) -> dict:
    """Library evaluation of one config's seeds (probe indices ``members``) -> a results-table row."""
    evaluations = [data.type.evaluate({s: result.logits[s][p] for s in EVAL_SPLITS}, data) for p in members]
    test, valid = [e["test"]["primary"] for e in evaluations], [e["valid"]["primary"] for e in evaluations]
    config = result.configs[members[0]]
    numbers = {k for k, v in evaluations[0]["test"].items() if isinstance(v, (int, float)) and k != "primary"}
    return {"task": data.task.name, "layer": _layer_name(data, config.layer), "layer_index": config.layer,
            "metric": data.type.primary, "test_mean": mean_ci(test)[0], "test_ci95": mean_ci(test)[1],
            "valid_mean": mean_ci(valid)[0], "valid_ci95": mean_ci(valid)[1], "seeds": len(members),
            "config": config_text(config), "strategy": evaluations[0]["test"].get("strategy"),
            "metrics": {f"test_{k}": mean_ci([e["test"][k] for e in evaluations])[0] for k in sorted(numbers)}}


def summarize(data, result) -> tuple:
    """Pick the best config per layer option on validation and evaluate its seeds with the libraries.

    Returns:
        (selected rows, per-probe rows): lists of dicts (see the module docstring).
    """
    configs = result.configs
    valid_score = result.best_valid
    if data.type.select_on_library and data.splits["valid"].dbn is None:  # beat: valid F after the DBN, not AP
        valid_score = np.array([data.type.evaluate({"valid": result.logits["valid"][p]}, data)["valid"]["primary"]
                                for p in range(len(configs))])
    families = defaultdict(list)  # config without seed -> probe indices
    for p, config in enumerate(configs):
        families[config.without_seed()].append(p)
    by_layer = defaultdict(list)
    for members in families.values():
        by_layer[configs[members[0]].layer].append(members)
    selected = []
    for layer in sorted(by_layer, key=lambda v: (v < 0, v)):
        members = max(by_layer[layer], key=lambda m: np.nanmean(valid_score[m]))
        selected.append(_selected_row(data, result, members))
    best = max(selected, key=lambda r: -np.inf if np.isnan(r["valid_mean"]) else r["valid_mean"])
    for row in selected:
        row["best_on_valid"] = row is best
    fast_test = _batched_test_metric(data, result)
    probes = [{"task": data.task.name, **asdict(c), "layer": _layer_name(data, c.layer), "layer_index": c.layer,
               "valid_primary_batched": float(result.best_valid[p]), "test_primary_batched": float(fast_test[p]),
               "valid_primary_selection": float(valid_score[p]),
               "steps": int(result.steps[p]), "best_step": int(result.best_step[p])}
              for p, c in enumerate(configs)]
    return selected, probes


def run_task(entry: dict, cfg: dict, source, device, settings, protocol, done: dict, head=None) -> tuple:
    """Load one task, its features and train its probes -> (selected rows, per-probe rows, task info).

    ``settings``: the run's ``protocol.train`` overrides (dict; a ``TrainSettings`` is taken as it is);
    ``done``: task name -> info of the tasks already run (names must be unique); ``head``: ``HeadSettings``
    (default: the protocol's).
    """
    if not isinstance(entry, dict) or "name" not in entry:
        raise ProbeConfigError(f"probe config: task entry {entry!r} needs a `name` (e.g. {{name: gtzan_genre, "
                               "root: /data/GTZAN}).")
    rules = protocol.rules_for(entry["name"], task_type_of(entry))
    options, crops = BeatCrops.split_options({**rules, **dict(entry)})
    task = load_probe_dataset(**options)
    if task.name in done:
        raise ProbeConfigError(f"probe config: two tasks are named {task.name!r}; give one a `task_name` option.")
    cache_dir = Path(cfg["cache_dir"]).expanduser() if cfg["cache_dir"] else None
    if hasattr(source, "bind_items"):  # Jukebox: JukeMIR names feature files by its per-dataset uid
        source.bind_items(task.items)
    crops = _crops_for(task, source, crops)
    features, train_windows = task_features(task, source, cache_dir, crops)
    data = assemble(task, features, device, train_windows)
    layers = resolve_layers(cfg["protocol"]["layers"] or protocol.layers, data.num_states)
    seeds = cfg["protocol"]["seeds"] or protocol.seeds
    grid = protocol.grid_for(task.name)
    configs = expand(grid, layers, seeds)
    if not isinstance(settings, TrainSettings):
        settings = protocol.settings_for(task.name, settings)
    head = head or protocol.head
    logger.info("task %s: %d probes (%d configs x %d layers x %d seeds) on %s", task.name, len(configs),
                len(grid), len(layers), len(seeds), device)
    train = train_batched if cfg["batched"] else train_sequential
    result = train(configs, data, settings, progress=cfg["progress"], head=head)
    selected, probes = summarize(data, result)
    info = {"type": task.type, "split_checksums": task.split_checksums(), "skipped": task.skipped,
            "items": {s: len(task.split_items(s)) for s in SPLITS},
            "rows": {s: data.splits[s].num_items for s in SPLITS},
            "feature_cache": "hit" if features.from_cache else "miss", "num_probes": len(configs),
            "train_seconds": result.seconds, "pooling": task.pooling, "window_seconds": task.window_seconds,
            "aggregate": task.aggregate, "encoding": task.encoding().key(), "rules": rules,
            "settings": asdict(settings), "head": asdict(head),
            "summed_states": data.layer_names[head.sum_from(data.layer_names):] if data.num_states > 1 else []}
    if task.type == "beat":
        info.update(beat_tolerance=task.beat_tolerance, beat_average=task.beat_average,
                    beat_neighbour_weight=task.beat_neighbour_weight, beat_training=task.beat_training,
                    beat_crop_frames=data.splits["train"].crop_frames,
                    beat_crop_encode=crops.encode if task.beat_training == "marble" else None,
                    beat_crop_hop_seconds=crops.hop_seconds if crops.windowed(task) else None,
                    beat_train_windows=len(data.splits["train"].files) if crops.windowed(task) else None)
    return selected, probes, info


def _crops_for(task, source, crops: BeatCrops) -> BeatCrops:
    """``crops``, or file crops when the source's features are precomputed (they cannot encode a crop alone)."""
    if crops.windowed(task) and not takes_encoding(source):
        logger.warning("task %s: %s features are precomputed, so beat training crops are cut from whole files' "
                       "frames (beat_crop_encode=file)", task.name, source.kind)
        return BeatCrops("file", crops.hop_seconds)
    return crops


def task_features(task, source, cache_dir, crops: BeatCrops) -> tuple:
    """(features of ``task.items``, train crops encoded alone or None), each from the cache when it has them.

    With ``crops.windowed(task)`` the train files are encoded as windows (``crops.encoding(task)``, its own
    cache entry: the windows are in the key) and only valid / test whole; the first set's train entries are None.
    """
    paths = [item.path for item in task.items]
    if not crops.windowed(task):
        return load_features(source, paths, task.pooling, task.window_seconds, task.hop_seconds, cache_dir,
                             task.encoding()), None
    train = [i for i, item in enumerate(task.items) if item.split == "train"]
    other = [i for i, item in enumerate(task.items) if item.split != "train"]
    whole = load_features(source, [paths[i] for i in other], task.pooling, task.window_seconds, task.hop_seconds,
                          cache_dir, task.encoding())
    windows = load_features(source, [paths[i] for i in train], task.pooling, None, None, cache_dir,
                            crops.encoding(task))
    if list(windows.layer_names) != list(whole.layer_names) or windows.frame_rate != whole.frame_rate:
        raise ProbeDataError(f"task {task.name}: train crops and whole files gave different states or frame rates "
                             f"({windows.layer_names} at {windows.frame_rate} Hz vs {whole.layer_names} at "
                             f"{whole.frame_rate} Hz).")
    arrays = [None] * len(paths)
    for k, i in enumerate(other):
        arrays[i] = whole.arrays[k]
    logger.info("task %s: %d train files encoded as %d crops of %g s alone (starts every %g s)", task.name,
                len(train), len(windows.arrays), task.beat_crop_seconds, crops.hop_seconds)
    return FeatureSet(arrays, whole.layer_names, whole.frame_rate, whole.from_cache and windows.from_cache), windows


def run_probe(cfg) -> dict:
    """Run every task of ``cfg`` (dict or OmegaConf node) and write the report to ``out_dir``.

    Returns:
        the summary dict also written as ``results.json`` (``selected`` rows, ``probes`` rows, ``tasks`` info,
        config and its hash, library versions, ``outputs``: file paths).
    """
    cfg = resolve_config(cfg)
    check_writable(cfg["out_dir"], fix="set out_dir to a folder on another disk")  # now, not after the work
    if cfg["cache_dir"]:
        check_writable(Path(cfg["cache_dir"]).expanduser(), fix=CACHE_FIX)
    device = resolve_device(cfg["device"])
    protocol = get_protocol(cfg["protocol"]["name"]).with_standardize(cfg["protocol"]["standardize"])
    settings = train_settings(protocol.settings, cfg["protocol"]["train"])  # checks the keys now
    head = head_settings(protocol, cfg)
    source_cfg = dict(cfg["source"])
    reference_table = source_cfg.pop("reference_table")
    reference = check_reference(source_cfg.pop("reference"), reference_table)
    source = build_source(**source_cfg, device=cfg["device"])
    summary = {"name": cfg["name"], "config": cfg, "protocol": protocol.name, "settings": asdict(settings),
               "head": asdict(head),
               "reference": reference,
               "config_hash": json_sha256(cfg),
               "versions": library_versions(), "device": str(device), "source": source.identity(),
               "selected": [], "probes": [], "tasks": {}}
    for entry in cfg["tasks"]:
        selected, probes, info = run_task(entry, cfg, source, device, cfg["protocol"]["train"], protocol,
                                          summary["tasks"], head)
        summary["selected"] += selected
        summary["probes"] += probes
        summary["tasks"][selected[0]["task"]] = info
    attach_published(summary["selected"], reference, reference_table)
    summary["outputs"] = {k: str(v) for k, v in write_report(Path(cfg["out_dir"]), summary).items()}
    _log_wandb(cfg, summary)
    return summary


def pretraining_run(source: dict) -> dict:
    """Where a checkpoint source's training curves are: fairseq's wandb run is named after ``$WANDB_NAME`` or the
    basename of ``checkpoint.save_dir``, in ``common.wandb_project`` (its random init too: the baseline beside it).
    Empty for any other source."""
    if source.get("kind") != "checkpoint" or not source.get("path"):
        return {}
    state = torch.load(source["path"], map_location="cpu", weights_only=True, mmap=True)  # cfg only: no copy
    cfg = state["cfg"]
    return {"project": cfg["common"].get("wandb_project"), "run": Path(cfg["checkpoint"]["save_dir"]).name,
            "num_updates": state["optimizer_history"][-1]["num_updates"], "checkpoint": str(source["path"])}


def _log_wandb(cfg: dict, summary: dict) -> None:
    """Log the results table and one summary value per (task, layer) to wandb when ``wandb.project`` is set.

    A checkpoint's probes join its pretraining run: wandb group = that run's name, run name
    ``<run>/probe-<name>``, job_type ``probe``, and the pretraining identity under ``config.pretraining``.
    """
    if not cfg["wandb"]["project"]:
        return
    import wandb

    pretraining = pretraining_run(cfg["source"])
    if pretraining.get("project") not in (None, cfg["wandb"]["project"]):
        logger.info("wandb: the checkpoint's training curves are in project %s", pretraining["project"])
    default_name = f"{pretraining['run']}/probe-{cfg['name']}" if pretraining else cfg["name"]
    run = wandb.init(project=cfg["wandb"]["project"], name=cfg["wandb"]["name"] or default_name,
                     group=pretraining.get("run"), job_type="probe", config={**cfg, "pretraining": pretraining},
                     dir=str(Path(cfg["out_dir"]).resolve()))
    columns = ["task", "layer", "metric", "test_mean", "test_ci95", "valid_mean", "seeds", "config"]
    run.log({"results": wandb.Table(columns=columns, data=[[r[c] for c in columns] for r in summary["selected"]])})
    for row in summary["selected"]:
        run.summary[f"{row['task']}/{row['layer']}/test_{row['metric']}"] = row["test_mean"]
    run.finish()
