"""Run a probe config end to end: source -> features (cached) -> probes per task -> selection -> report.

The config (a dict or OmegaConf node; ``tools/probe.py`` composes it with hydra) has these keys; the
defaults are ``DEFAULTS``::

    name: music2vec_base                 # title of the report
    data_root: /data/mir                 # optional, for ${data_root} in task roots
    source: {kind: checkpoint, path: ..., layers: null, batch_size: 8, chunk_seconds: 30, dim: 4800}
    tasks:                               # registry names + their options (root, pooling overrides, ...)
      - {name: gtzan_genre, root: /data/gtzan}
      - {name: csv, path: /data/my_task.csv, type: multiclass}
    protocol: {name: marble, layers: null, seeds: null, train: {}}   # null = the preset's; train = overrides
    batched: true                        # false = the sequential reference loop
    device: auto                         # CUDA when present
    cache_dir: ~/.cache/music-ssl/probe-features
    out_dir: probe_results
    wandb: {project: null, name: null}   # set a project to log (WANDB_MODE=offline works)
"""
import copy
import hashlib
import json
import logging
from collections import defaultdict
from dataclasses import asdict, fields, replace
from pathlib import Path

import numpy as np
import torch

from .assemble import assemble
from .errors import ProbeConfigError
from .features import build_source, load_features
from .features.encoder_source import default_device
from .protocols import WEIGHTED_SUM, TrainSettings, expand, get_protocol, resolve_layers
from .report import library_versions, mean_ci, write_report
from .tasks import load_task
from .trainer import train_batched, train_sequential

logger = logging.getLogger(__name__)

DEFAULTS = {
    "name": "probe",
    "data_root": None,  # free slot for interpolation in task roots: root: ${data_root}/gtzan
    "source": {"kind": None, "path": None, "layers": None, "batch_size": 8, "chunk_seconds": 30.0, "dim": 4800},
    "tasks": [],
    "protocol": {"name": "marble", "layers": None, "seeds": None, "train": {}},
    "batched": True,
    "device": "auto",
    "cache_dir": "~/.cache/music-ssl/probe-features",
    "out_dir": "probe_results",
    "wandb": {"project": None, "name": None},
    "progress": True,
}


def resolve_config(cfg) -> dict:
    """Merge ``cfg`` over ``DEFAULTS`` (one level deep for blocks) and reject unknown keys."""
    if hasattr(cfg, "_metadata"):  # OmegaConf node
        from omegaconf import OmegaConf

        cfg = OmegaConf.to_container(cfg, resolve=True)
    cfg = dict(cfg)
    unknown = sorted(set(cfg) - set(DEFAULTS))
    if unknown:
        raise ProbeConfigError(f"unknown probe config keys {unknown}; known: {sorted(DEFAULTS)}.")
    out = copy.deepcopy(DEFAULTS)
    for key, value in cfg.items():
        if isinstance(out[key], dict) and isinstance(value, dict):
            bad = sorted(set(value) - set(out[key])) if key != "wandb" else []
            if bad:
                raise ProbeConfigError(f"unknown keys {bad} in `{key}`; known: {sorted(out[key])}.")
            out[key].update(value)
        else:
            out[key] = value
    if not out["source"]["kind"]:
        raise ProbeConfigError("source.kind is not set; choose checkpoint, hf, jukebox, chroma or mfcc.")
    if not out["tasks"]:
        raise ProbeConfigError("no tasks: list at least one under `tasks:` (e.g. {name: gtzan_genre, root: ...}).")
    return out


def train_settings(preset: TrainSettings, overrides: dict) -> TrainSettings:
    known = {f.name for f in fields(TrainSettings)}
    bad = sorted(set(overrides or {}) - known)
    if bad:
        raise ProbeConfigError(f"unknown protocol.train keys {bad}; known: {sorted(known)}.")
    return replace(preset, **(overrides or {}))


def config_text(config) -> str:
    kind = f"mlp{config.hidden}" if config.hidden else "linear"
    return (f"{kind} lr={config.lr:g} bs={config.batch_size} dropout={config.dropout:g} l2={config.l2:g} "
            f"std={int(config.standardize)}")


def _layer_name(data, layer: int) -> str:
    return "weighted_sum" if layer == WEIGHTED_SUM else data.layer_names[layer]


def _library_eval(data, result, p: int) -> dict:
    return data.type.evaluate({s: result.logits[s][p] for s in ("valid", "test")}, data)


def _fast_test_metric(data, result) -> np.ndarray:
    """Batched torch primary metric of every probe on the test split (beat: frame AP)."""
    split = data.splits["test"]
    out = []
    for start in range(0, len(result.configs), 64):
        logits = torch.as_tensor(result.logits["test"][start:start + 64], device=split.y.device)
        out.append(data.type.batched_primary(logits, split).float().cpu().numpy())
    return np.concatenate(out)


def summarize(task, data, result) -> tuple:
    """Pick the best config per layer option on validation; evaluate its seeds with the libraries.

    Returns:
        (selected rows, per-probe rows) as lists of dicts.
    """
    configs = result.configs
    selection = result.best_valid.astype(np.float64)
    if task.type == "beat":  # select with the real metric (DBN + F-measure), not the frame-AP early-stopping proxy
        selection = np.array([_library_eval(data, result, p)["valid"]["primary"] for p in range(len(configs))])
    families = defaultdict(list)
    for p, config in enumerate(configs):
        families[config.without_seed()].append(p)
    by_layer = defaultdict(list)
    for members in families.values():
        by_layer[configs[members[0]].layer].append(members)
    selected = []
    for layer in sorted(by_layer, key=lambda v: (v < 0, v)):
        members = max(by_layer[layer], key=lambda m: np.nanmean(selection[m]))
        evaluations = [_library_eval(data, result, p) for p in members]
        test, valid = ([e[s]["primary"] for e in evaluations] for s in ("test", "valid"))
        metrics = {f"test_{k}": mean_ci([e["test"][k] for e in evaluations])[0]
                   for k, v in evaluations[0]["test"].items() if isinstance(v, (int, float)) and k != "primary"}
        selected.append({"task": task.name, "layer": _layer_name(data, layer), "layer_index": layer,
                         "metric": data.type.primary, "test_mean": mean_ci(test)[0], "test_ci95": mean_ci(test)[1],
                         "valid_mean": mean_ci(valid)[0], "valid_ci95": mean_ci(valid)[1], "seeds": len(members),
                         "config": config_text(configs[members[0]]), "metrics": metrics,
                         "strategy": evaluations[0]["test"].get("strategy")})
    best = max(selected, key=lambda r: r["valid_mean"])
    for row in selected:
        row["best_on_valid"] = row is best
    fast_test = _fast_test_metric(data, result)
    probes = [{"task": task.name, "layer": _layer_name(data, c.layer), **c.as_dict(),
               "valid_primary": float(selection[p]), "test_primary_fast": float(fast_test[p]),
               "steps": int(result.steps[p]), "best_step": int(result.best_step[p])}
              for p, c in enumerate(configs)]
    return selected, probes


def _run_task(entry: dict, cfg: dict, source, device, settings, protocol) -> tuple:
    task = load_task(**entry)
    cache_dir = Path(cfg["cache_dir"]).expanduser() if cfg["cache_dir"] else None
    features = load_features(source, [item.path for item in task.items], task.pooling, task.window_seconds,
                             task.hop_seconds, cache_dir)
    data = assemble(task, features, device)
    layers = resolve_layers(cfg["protocol"]["layers"] or protocol.layers, data.num_states)
    seeds = cfg["protocol"]["seeds"] or protocol.seeds
    configs = expand(protocol.grid, layers, seeds)
    logger.info("task %s: %d probes (%d configs x %d layers x %d seeds) on %s", task.name, len(configs),
                len(protocol.grid), len(layers), len(seeds), device)
    train = train_batched if cfg["batched"] else train_sequential
    result = train(configs, data, settings, progress=cfg["progress"])
    selected, probes = summarize(task, data, result)
    info = {"split_checksums": task.split_checksums(), "skipped": task.skipped,
            "items": {s: len(task.split_items(s)) for s in ("train", "valid", "test")},
            "rows": {s: data.splits[s].num_items for s in ("train", "valid", "test")},
            "feature_cache": "hit" if features.from_cache else "miss", "num_probes": len(configs),
            "train_seconds": result.seconds, "pooling": task.pooling, "window_seconds": task.window_seconds}
    return selected, probes, info


def run_probe(cfg, encoder=None) -> dict:
    """Run every task of ``cfg`` and write the report to ``cfg.out_dir``; returns the summary dict.

    Args:
        encoder: an already-built encoder object for ``source.kind`` checkpoint/hf (tests); optional.
    """
    cfg = resolve_config(cfg)
    device = default_device(cfg["device"])
    protocol = get_protocol(cfg["protocol"]["name"])
    settings = train_settings(protocol.settings, cfg["protocol"]["train"])
    source = build_source(**cfg["source"], device=cfg["device"], encoder=encoder)
    summary = {"name": cfg["name"], "config": cfg, "protocol": protocol.name, "settings": asdict(settings),
               "config_hash": hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest(),
               "versions": library_versions(), "device": str(device),
               "source": {k: v for k, v in source.identity().items() if k != "files"},
               "selected": [], "probes": [], "tasks": {}}
    for entry in cfg["tasks"]:
        selected, probes, info = _run_task(dict(entry), cfg, source, device, settings, protocol)
        summary["selected"] += selected
        summary["probes"] += probes
        summary["tasks"][selected[0]["task"]] = info
    summary["outputs"] = {k: str(v) for k, v in write_report(Path(cfg["out_dir"]), summary).items()}
    _log_wandb(cfg, summary)
    return summary


def _log_wandb(cfg: dict, summary: dict) -> None:
    if not cfg["wandb"].get("project"):
        return
    import wandb

    run = wandb.init(project=cfg["wandb"]["project"], name=cfg["wandb"].get("name") or cfg["name"],
                     config=cfg, dir=str(Path(cfg["out_dir"]).resolve()))
    columns = ["task", "layer", "metric", "test_mean", "test_ci95", "valid_mean", "seeds", "config"]
    run.log({"results": wandb.Table(columns=columns, data=[[r[c] for c in columns] for r in summary["selected"]])})
    for row in summary["selected"]:
        run.summary[f"{row['task']}/{row['layer']}/test_{row['metric']}"] = row["test_mean"]
    run.finish()
