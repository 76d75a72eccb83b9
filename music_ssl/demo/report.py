"""The demo report: one Markdown page showing whether pretraining learned (loss curves, MusicHuBERT's validation
accuracy beside the majority-label rate, music2vec's target std and EMA decay) and whether it helped (the probe
table, pretrained − random gains with their CIs, the gains each objective's targets lead us to expect).

Inputs are what the stages wrote: each probe run's ``results.json`` (rows selected per layer on validation, see
``music_ssl.probe.report``), each fairseq run's ``hydra/hydra_train.log`` (``log_format: json`` lines) and the
validation label files.
"""
from __future__ import annotations

import json
import logging
import math
import os
import platform
import re
from pathlib import Path

import numpy as np

from music_ssl.core.atomic import atomic_path, write_text_atomic
from music_ssl.data.label_files import label_lines, label_rate_of, read_dictionary

logger = logging.getLogger(__name__)

SOURCES = (  # probe stage -> column title
    ("probe_music_hubert", "MusicHuBERT"), ("probe_music2vec", "music2vec"),
    ("probe_random_hubert", "random MusicHuBERT"), ("probe_random_music2vec", "random music2vec"),
    ("probe_chroma", "CHROMA"), ("probe_mfcc", "MFCC"),
)
PRETRAINED_VS_RANDOM = (("probe_music_hubert", "probe_random_hubert"), ("probe_music2vec", "probe_random_music2vec"))
TRAINING_RUNS = (("hubert_iter1", "MusicHuBERT iteration 1"), ("hubert_iter2", "MusicHuBERT iteration 2"),
                 ("music2vec", "music2vec"))
MUSIC2VEC2_SOURCES = (("probe_music2vec2", "music2vec2"), ("probe_random_music2vec2", "random music2vec2"))
MUSIC2VEC2_PAIR = ("probe_music2vec2", "probe_random_music2vec2")
MUSIC2VEC2_RUN = ("music2vec2", "music2vec2")
LOG_LINE = re.compile(r"\[(train_inner|valid)\]\[INFO\] - (\{.*\})\s*$")


def columns(settings) -> tuple[tuple, tuple, tuple]:
    """(probe sources, pretrained-vs-random pairs, training runs) of the report: the default demo's, plus
    music2vec2's (``settings.music2vec2``: its checkpoint and random init after music2vec's)."""
    if not getattr(settings, "music2vec2", False):
        return SOURCES, PRETRAINED_VS_RANDOM, TRAINING_RUNS
    at = [s for s, _t in SOURCES].index("probe_random_music2vec") + 1
    return (SOURCES[:at] + MUSIC2VEC2_SOURCES + SOURCES[at:], PRETRAINED_VS_RANDOM + (MUSIC2VEC2_PAIR,),
            TRAINING_RUNS + (MUSIC2VEC2_RUN,))


def load_selected(out_dir: Path, sources=SOURCES) -> dict[str, dict[str, dict]]:
    """``{probe stage: {task: row chosen on validation}}`` from every probe run's ``results.json``."""
    chosen = {}
    for stage, _title in sources:
        path = out_dir / "probe" / stage / "results.json"
        rows = json.loads(path.read_text())["selected"]
        chosen[stage] = {r["task"]: r for r in rows if r["best_on_valid"]}
    return chosen


def load_layer_rows(out_dir: Path, stage: str) -> list[dict]:
    return json.loads((out_dir / "probe" / stage / "results.json").read_text())["selected"]


def cell(row: dict | None) -> str:
    if row is None:
        return "—"
    ci = "" if math.isnan(row["test_ci95"]) else f" ± {100 * row['test_ci95']:.1f}"
    return f"{100 * row['test_mean']:.1f}{ci} ({row['layer']})"


def results_table(chosen: dict, sources=SOURCES) -> str:
    """Markdown: a row per task, a column per source; test metric ×100 of the layer chosen on validation."""
    tasks = list(next(iter(chosen.values())))
    head = "| task | metric | " + " | ".join(title for _s, title in sources) + " |"
    lines = [head, "|---" * (len(sources) + 2) + "|"]
    for task in tasks:
        metric = chosen[sources[0][0]][task]["metric"]
        cells = [cell(chosen[stage].get(task)) for stage, _title in sources]
        lines.append(f"| {task} | {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def pretraining_gains(chosen: dict, pairs=PRETRAINED_VS_RANDOM, sources=SOURCES) -> list[dict]:
    """Per task and model: pretrained − random test metric (points) and whether the 95% CIs separate."""
    gains = []
    for trained, random in pairs:
        for task, row in chosen[trained].items():
            base = chosen[random][task]
            half = sum(0.0 if math.isnan(r["test_ci95"]) else r["test_ci95"] for r in (row, base))
            delta = row["test_mean"] - base["test_mean"]
            gains.append({"model": dict(sources)[trained], "task": task, "delta": 100 * delta,
                          "separated": abs(delta) > half})
    return gains


def gains_text(gains: list[dict]) -> str:
    lines = []
    for g in gains:
        verdict = "beats" if g["delta"] > 0 else "trails"
        sure = "95% CIs separate" if g["separated"] else "within the 95% CIs"
        lines.append(f"- {g['model']} {verdict} its random init on **{g['task']}** by {abs(g['delta']):.1f} points ({sure})")
    return "\n".join(lines) + "\n"


def read_training_log(path: Path) -> dict[str, list[dict]]:
    """``{"train": [record...], "valid": [record...]}`` from a fairseq ``log_format: json`` hydra log.

    train records are the ``train_inner`` averages (every ``log_interval`` updates), valid records one per
    validation; keys lose their ``valid_`` prefix and values become floats (``num_updates`` int). fairseq's own
    metrics: ``loss`` (both models), ``correct_m_0`` / ``correct_u_0`` (hubert criterion: accuracy of the masked /
    unmasked frames), ``target_var`` / ``pred_var`` / ``ema_decay`` (×1000) (data2vec, ``criterion.log_keys``).
    """
    curves = {"train_inner": [], "valid": []}
    for line in path.read_text().splitlines():
        match = LOG_LINE.search(line)
        if not match or match.group(1) not in curves:
            continue
        kind, record = match.group(1), json.loads(match.group(2))
        prefix = "valid_" if kind == "valid" else ""
        parsed = {}
        for key, value in record.items():
            try:
                parsed[key[len(prefix):] if key.startswith(prefix) else key] = float(value)
            except (TypeError, ValueError):
                continue
        if "num_updates" in parsed and "loss" in parsed:
            parsed["num_updates"] = int(parsed["num_updates"])
            curves[kind].append(parsed)
    return {"train": curves["train_inner"], "valid": curves["valid"]}


def curve(records: list[dict], key: str, scale: float = 1.0) -> list[tuple[int, float]]:
    """``[(update, value * scale)...]`` of the records that hold ``key``."""
    return [(r["num_updates"], scale * r[key]) for r in records if key in r]


def training_logs(out_dir: Path, runs=TRAINING_RUNS) -> dict[str, dict[str, list[dict]]]:
    return {run: read_training_log(out_dir / "checkpoints" / run / "hydra" / "hydra_train.log")
            for run, _title in runs}


def majority_rate(km: Path, frame_rate: float = 50.0) -> float:
    """Share of the most frequent label among the frames HuBERT predicts (labels at the rate label prep recorded,
    taken every ``label_rate / frame_rate`` labels as fairseq's HuBERT does): the accuracy of always guessing it."""
    k = read_dictionary(km.parent)
    step = max(1, int(round(label_rate_of(km, k) / frame_rate)))
    counts = np.zeros(k, dtype=np.int64)
    for labels in label_lines(km, k):
        counts += np.bincount(labels[::step], minlength=k)
    return float(counts.max() / counts.sum())


def plot_losses(path: Path, logs: dict, runs=TRAINING_RUNS) -> dict[str, int]:
    """One panel per pretraining run: train loss per update, valid loss as markers. Returns train points plotted."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(runs), figsize=(4.3 * len(runs), 3.3), squeeze=False)
    counts = {}
    for ax, (run, title) in zip(axes[0], runs):
        counts[run] = len(logs[run]["train"])
        for kind, style in (("train", "-"), ("valid", "o-")):
            points = curve(logs[run][kind], "loss")
            if points:
                ax.plot(*zip(*points), style, label=kind, markersize=3)
        ax.set(title=title, xlabel="update",
               ylabel="cross-entropy (bits)" if run.startswith("hubert") else "regression loss (scaled L2)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    save_figure(fig, path)
    return counts


def plot_learning(path: Path, logs: dict, majority: dict[str, float], runs=TRAINING_RUNS) -> None:
    """MusicHuBERT: validation accuracy of masked / unmasked frames and the majority-label rate, per iteration;
    music2vec (and music2vec2): target and prediction std (train) and the EMA teacher's decay, per update."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(runs), figsize=(4.3 * len(runs), 3.3), squeeze=False)
    for ax, (run, title) in zip(axes[0], runs):
        records = logs[run]
        if run in majority:
            for key, label in (("correct_m_0", "masked"), ("correct_u_0", "unmasked")):
                points = curve(records["valid"], key, 100)
                if points:
                    ax.plot(*zip(*points), "o-", markersize=3, label=f"valid accuracy, {label}")
            ax.axhline(100 * majority[run], color="k", linestyle="--", linewidth=0.8, label="majority label")
            ax.axhline(300 * majority[run], color="k", linestyle=":", linewidth=0.8, label="3 × majority")
            ax.set(ylabel="% of frames")
        else:
            stats = records["train"] or records["valid"]
            for key, label in (("target_var", "target std"), ("pred_var", "prediction std")):
                points = curve(stats, key)
                if points:
                    ax.plot(*zip(*points), ".-", label=label)
            decay = curve(stats, "ema_decay", 1e-3)
            if decay:
                twin = ax.twinx()
                twin.plot(*zip(*decay), "r--", linewidth=0.8, label="EMA decay")
                twin.set_ylabel("EMA decay", color="r")
                twin.legend(fontsize=7, loc="lower right")
            ax.set(ylabel="std over frames, mean over channels")
        ax.set(title=title, xlabel="update")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    save_figure(fig, path)


def last(records: list[dict], key: str, n: int = 1) -> float:
    """Mean of the last ``n`` values of ``key`` (NaN when never logged)."""
    values = [r[key] for r in records if key in r][-n:]
    return sum(values) / len(values) if values else math.nan


def learning_summary(logs: dict, majority: dict[str, float], runs=TRAINING_RUNS) -> dict:
    """Per run, the numbers the report states: final valid accuracies vs the majority rate (MusicHuBERT) and the
    first / last target std, prediction std and EMA decay (music2vec)."""
    summary = {}
    for run, _title in runs:
        train, valid = logs[run]["train"], logs[run]["valid"]
        row = {"train_loss_first": train[0]["loss"] if train else math.nan, "train_loss_last": last(train, "loss"),
               "valid_loss_last": last(valid, "loss")}
        if run in majority:
            masked = last(valid, "correct_m_0")
            row.update(valid_masked_acc=masked, valid_unmasked_acc=last(valid, "correct_u_0"),
                       majority_rate=majority[run], ratio=masked / majority[run])
        else:
            stats = train or valid  # a run shorter than log_interval logs only its validations
            firsts = {k: next((r[k] for r in stats if k in r), math.nan) for k in ("target_var", "pred_var", "ema_decay")}
            row.update(target_std_first=firsts["target_var"], target_std_last=last(stats, "target_var"),
                       pred_std_first=firsts["pred_var"], pred_std_last=last(stats, "pred_var"),
                       ema_decay_first=firsts["ema_decay"] / 1000, ema_decay_last=last(stats, "ema_decay") / 1000)
        summary[run] = row
    return summary


def learning_text(summary: dict, runs=TRAINING_RUNS) -> str:
    lines = ["| run | train loss (first → last) | valid loss | valid accuracy masked / unmasked | majority label "
             "| masked ÷ majority |", "|---|---|---|---|---|---|"]
    for run, title in runs:
        row = summary[run]
        if "majority_rate" not in row:
            continue
        lines.append(f"| {title} | {row['train_loss_first']:.2f} → {row['train_loss_last']:.2f} | "
                     f"{row['valid_loss_last']:.2f} | {100 * row['valid_masked_acc']:.1f}% / "
                     f"{100 * row['valid_unmasked_acc']:.1f}% | {100 * row['majority_rate']:.1f}% | "
                     f"{row['ratio']:.1f}× |")
    m2v = summary["music2vec"]
    lines += ["", f"music2vec: train loss {m2v['train_loss_first']:.3f} → {m2v['train_loss_last']:.3f} (a moving "
              f"target: the teacher changes), target std {m2v['target_std_first']:.3f} → {m2v['target_std_last']:.3f}, "
              f"prediction std {m2v['pred_std_first']:.3f} → {m2v['pred_std_last']:.3f}, EMA decay "
              f"{m2v['ema_decay_first']:.4f} → {m2v['ema_decay_last']:.4f}. A target std near 0 would mean collapse to "
              "one vector; the prediction std approaching the target's means the student regresses the targets "
              "rather than their mean. The targets are instance-normalised over time per clip, so they keep "
              "unit-scale variation whatever the teacher encodes: the probe table (pretrained vs random init) "
              "shows what the states keep."]
    if "music2vec2" in summary:
        m2 = summary["music2vec2"]
        lines += ["", f"music2vec2 (data2vec 2.0 recipe): train loss {m2['train_loss_first']:.3f} → "
                  f"{m2['train_loss_last']:.3f}, target std {m2['target_std_first']:.3f} → {m2['target_std_last']:.3f}, "
                  f"prediction std {m2['pred_std_first']:.3f} → {m2['pred_std_last']:.3f}, EMA decay "
                  f"{m2['ema_decay_first']:.4f} → {m2['ema_decay_last']:.4f}."]
    return "\n".join(lines) + "\n"


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_layers(path: Path, out_dir: Path, sources=SOURCES) -> None:
    """Test metric per hidden state, one panel per task, one line per checkpoint source (weighted sum dashed)."""
    plt = pyplot()

    stages = [s for s in sources if s[0] not in ("probe_chroma", "probe_mfcc")]
    rows = {stage: load_layer_rows(out_dir, stage) for stage, _t in stages}
    tasks = list(dict.fromkeys(r["task"] for r in rows[stages[0][0]]))
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.0 * len(tasks), 3.3), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for color, (stage, title) in enumerate(stages):
            mine = [r for r in rows[stage] if r["task"] == task]
            layers = sorted((r for r in mine if r["layer_index"] >= 0), key=lambda r: r["layer_index"])
            ax.plot([r["layer_index"] for r in layers], [100 * r["test_mean"] for r in layers], "o-",
                    color=f"C{color}", label=title)
            for r in mine:
                if r["layer_index"] < 0:
                    ax.axhline(100 * r["test_mean"], color=f"C{color}", linestyle="--", linewidth=0.8)
        ax.set(title=task, xlabel="hidden state (0 = Transformer input)", ylabel=f"test {mine[0]['metric']} ×100")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    save_figure(fig, path)


def save_figure(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def stages_table(results) -> str:
    lines = ["| stage | what | status | seconds |", "|---|---|---|---|"]
    lines += [f"| {r.name} | {r.title} | {r.status} | {r.seconds:.0f} |" for r in results]
    return "\n".join(lines) + "\n"


EXPECTED_GAINS = """\
What the objectives' targets carry, hence where pretrained − random gains are expected (and where not). The random
init is a strong baseline here: a random CNN keeps most of the spectrum, and the probes z-score every feature.

- **MusicHuBERT, iteration 1** predicts k-means clusters of 13 MFCCs + Δ + ΔΔ: the spectral envelope and how it
  changes, i.e. timbre, loudness and onsets, with pitch and harmony smoothed away. Expected: gains on **beat**
  (onsets are loudness and Δ-MFCC changes) and on **note_instrument** / **instrument** (timbre; diluted by the other
  parts in a mix). Not expected: **pitch** and **key** (the targets discard them; the pretrained model may trail the
  random init's pitch detail). Iteration 2's targets are clusters of iteration 1's layer: it inherits the bias.
- **music2vec** regresses the average of its EMA teacher's top layers, each instance-normalised over time per clip
  (data2vec's targets): what changes within a clip (which note sounds, the chords, the onsets) stays in the targets,
  what is constant over it (the instrument's timbre, the level) is removed. Expected: gains on **pitch**, **key**
  and **beat**; none, or losses, on **instrument** and **note_instrument**. Its target std first dips, then
  rises (`learning.png`); at 300 updates, still in the dip, no gain separated on this corpus (README).
"""


def target_verdict(summary: dict, gains: list[dict], runs=TRAINING_RUNS, pairs=PRETRAINED_VS_RANDOM,
                   sources=SOURCES) -> str:
    """The issue's target: MusicHuBERT's validation masked accuracy ≥ 3× the majority-label rate (both iterations),
    and for each pretrained model at least one task where it beats its random init with separated 95% CIs."""
    lines = []
    for run, title in runs:
        row = summary[run]
        if "ratio" in row:
            met = "met" if row["ratio"] >= 3 else "NOT met"
            role = "the probed model" if run == "hubert_iter2" else "for reference; its labels feed iteration 2"
            lines.append(f"- {title} ({role}): validation masked accuracy {100 * row['valid_masked_acc']:.1f}% = "
                         f"{row['ratio']:.1f}× the majority-label rate ({100 * row['majority_rate']:.1f}%): ≥ 3× {met}.")
    for _trained, model in ((t, dict(sources)[t]) for t, _r in pairs):
        wins = [g["task"] for g in gains if g["model"] == model and g["delta"] > 0 and g["separated"]]
        lines.append(f"- {model} beats its random init with separated 95% CIs on: "
                     f"{', '.join(wins) if wins else 'no task (NOT met)'}.")
    return "\n".join(lines) + "\n"


def label_majorities(settings, out: Path) -> dict[str, float]:
    """Majority-label rate of each MusicHuBERT run's validation labels (its ``task.label_dir``)."""
    labels = out / "labels"
    return {"hubert_iter1": majority_rate(labels / f"mfcc39_k{settings.n_clusters}" / "valid.km"),
            "hubert_iter2": majority_rate(labels / f"layer{settings.label_layer}_k{settings.n_clusters}" / "valid.km")}


def write_demo_report(settings, results, seconds: float) -> Path:
    """Write ``report.md``, ``results.json``, ``loss_curves.png``, ``learning.png`` and ``layers.png`` into
    ``settings.out_dir``; returns report.md."""
    out = Path(settings.out_dir)
    sources, pairs, runs = columns(settings)
    chosen = load_selected(out, sources)
    logs, majority = training_logs(out, runs), label_majorities(settings, out)
    summary, gains = learning_summary(logs, majority, runs), pretraining_gains(chosen, pairs, sources)
    plot_losses(out / "loss_curves.png", logs, runs)
    plot_learning(out / "learning.png", logs, majority, runs)
    plot_layers(out / "layers.png", out, sources)
    write_text_atomic(out / "results.json", json.dumps({"selected": chosen, "gains": gains, "pretraining": summary},
                                                       indent=1))
    text = "\n".join([
        "# music-ssl demo report", "",
        f"Machine: {platform.node()} ({os.cpu_count()} CPU cores, {'CUDA' if settings.use_cuda() else 'CPU only'}); "
        f"this run took {seconds / 60:.1f} min (reused stages count 0). Corpus: {settings.n_pieces} pieces of "
        f"{settings.piece_seconds:g} s + {settings.n_notes} single notes; k = {settings.n_clusters}; "
        f"{settings.hubert_updates} updates per MusicHuBERT iteration, {settings.music2vec_updates} for music2vec"
        f"{' and music2vec2' if getattr(settings, 'music2vec2', False) else ''}; "
        f"seed {settings.seed} (masks seeded: a rerun with the same torch thread count gives the same checkpoints "
        "and table).", "",
        "## Target", "", target_verdict(summary, gains, runs, pairs, sources),
        "## Did pretraining learn?", "",
        "![loss curves](loss_curves.png)", "", "![learning](learning.png)", "", learning_text(summary, runs),
        "## Probe results", "",
        "Test metric ×100 (mean ± 95% CI over seeds) of the hidden state chosen on validation (in brackets; "
        "`weighted_sum` = softmax-weighted sum of all states; MLP-512 on features z-scored with train statistics, "
        "`config/probe/demo.yaml`). key: mir_eval weighted score; instrument, "
        "note_instrument, pitch: accuracy; beat: mir_eval F-measure (±70 ms) after madmom's DBN.", "",
        results_table(chosen, sources), "### Did pretraining help?", "", gains_text(gains), "### What we expect, and why", "",
        EXPECTED_GAINS,
        "## Per-layer probes", "", "![layers](layers.png)", "",
        "## Stages", "", stages_table(results), "",
        "## Where the files are", "",
        f"- corpus (audio, MIDI, task CSVs): `{out / 'corpus'}`",
        f"- manifests and k-means labels: `{out / 'manifest'}`, `{out / 'labels'}`",
        f"- checkpoints and training logs: `{out / 'checkpoints'}/<run>/checkpoint_last.pt`, `…/hydra/hydra_train.log`"
        " (fairseq's json lines: loss, correct_m_0/correct_u_0, target_var/pred_var/ema_decay)",
        f"- probe tables per source (Markdown, CSV, JSON, plot): `{out / 'probe'}/<source>/`",
        f"- each stage's command output: `{out / '.stages'}/<stage>.log`", "",
    ])
    write_text_atomic(out / "report.md", text)
    return out / "report.md"
