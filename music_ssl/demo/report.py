"""The demo report: one Markdown page with the results table, the pretraining loss curves and the per-layer plot.

Inputs are what the stages wrote: each probe run's ``results.json`` (rows selected per layer on validation, see
``music_ssl.probe.report``) and each fairseq run's ``hydra/hydra_train.log`` (``log_format: json`` lines).
"""
from __future__ import annotations

import json
import logging
import math
import os
import platform
import re
from pathlib import Path

from music_ssl.data.atomic import atomic_path, write_text_atomic

logger = logging.getLogger(__name__)

SOURCES = (  # probe stage -> column title
    ("probe_music_hubert", "MusicHuBERT"), ("probe_music2vec", "music2vec"),
    ("probe_random_hubert", "random MusicHuBERT"), ("probe_random_music2vec", "random music2vec"),
    ("probe_chroma", "CHROMA"), ("probe_mfcc", "MFCC"),
)
PRETRAINED_VS_RANDOM = (("probe_music_hubert", "probe_random_hubert"), ("probe_music2vec", "probe_random_music2vec"))
TRAINING_RUNS = (("hubert_iter1", "MusicHuBERT iteration 1"), ("hubert_iter2", "MusicHuBERT iteration 2"),
                 ("music2vec", "music2vec"))
LOG_LINE = re.compile(r"\[(train_inner|valid)\]\[INFO\] - (\{.*\})\s*$")


def load_selected(out_dir: Path) -> dict[str, dict[str, dict]]:
    """``{probe stage: {task: row chosen on validation}}`` from every probe run's ``results.json``."""
    chosen = {}
    for stage, _title in SOURCES:
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


def results_table(chosen: dict) -> str:
    """Markdown: a row per task, a column per source; test metric ×100 of the layer chosen on validation."""
    tasks = list(next(iter(chosen.values())))
    head = "| task | metric | " + " | ".join(title for _s, title in SOURCES) + " |"
    lines = [head, "|---" * (len(SOURCES) + 2) + "|"]
    for task in tasks:
        metric = chosen[SOURCES[0][0]][task]["metric"]
        cells = [cell(chosen[stage].get(task)) for stage, _title in SOURCES]
        lines.append(f"| {task} | {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def pretraining_gains(chosen: dict) -> list[dict]:
    """Per task and model: pretrained − random test metric (points) and whether the 95% CIs separate."""
    gains = []
    for trained, random in PRETRAINED_VS_RANDOM:
        for task, row in chosen[trained].items():
            base = chosen[random][task]
            half = sum(0.0 if math.isnan(r["test_ci95"]) else r["test_ci95"] for r in (row, base))
            delta = row["test_mean"] - base["test_mean"]
            gains.append({"model": dict(SOURCES)[trained], "task": task, "delta": 100 * delta,
                          "separated": abs(delta) > half})
    return gains


def gains_text(gains: list[dict]) -> str:
    lines = []
    for g in gains:
        verdict = "beats" if g["delta"] > 0 else "trails"
        sure = "95% CIs separate" if g["separated"] else "within the 95% CIs"
        lines.append(f"- {g['model']} {verdict} its random init on **{g['task']}** by {abs(g['delta']):.1f} points ({sure})")
    return "\n".join(lines) + "\n"


def read_training_log(path: Path) -> dict[str, list[tuple[int, float]]]:
    """``{"train": [(update, loss)...], "valid": [...]}`` from a fairseq ``log_format: json`` hydra log.

    train points are the ``train_inner`` averages (every ``log_interval`` updates); valid points one per epoch.
    """
    curves = {"train_inner": [], "valid": []}
    for line in path.read_text().splitlines():
        match = LOG_LINE.search(line)
        if not match or match.group(1) not in curves:
            continue
        kind, record = match.group(1), json.loads(match.group(2))
        prefix = "valid_" if kind == "valid" else ""
        loss, updates = record.get(f"{prefix}loss"), record.get(f"{prefix}num_updates")
        if loss is not None and updates is not None:
            curves[kind].append((int(updates), float(loss)))
    return {"train": curves["train_inner"], "valid": curves["valid"]}


def plot_losses(path: Path, out_dir: Path) -> dict[str, int]:
    """One panel per pretraining run: train loss per update (valid loss as markers). Returns points plotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(TRAINING_RUNS), figsize=(4.3 * len(TRAINING_RUNS), 3.3), squeeze=False)
    counts = {}
    for ax, (run, title) in zip(axes[0], TRAINING_RUNS):
        curves = read_training_log(out_dir / "checkpoints" / run / "hydra" / "hydra_train.log")
        counts[run] = len(curves["train"])
        for kind, style in (("train", "-"), ("valid", "o")):
            if curves[kind]:
                ax.plot(*zip(*curves[kind]), style, label=kind)
        ax.set(title=title, xlabel="update", ylabel="loss")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    save_figure(fig, path)
    return counts


def plot_layers(path: Path, out_dir: Path) -> None:
    """Test metric per hidden state, one panel per task, one line per checkpoint source (weighted sum dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = [s for s in SOURCES if s[0] not in ("probe_chroma", "probe_mfcc")]
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


def write_demo_report(settings, results, seconds: float) -> Path:
    """Write ``report.md``, ``loss_curves.png`` and ``layers.png`` into ``settings.out_dir``; returns report.md."""
    out = Path(settings.out_dir)
    chosen = load_selected(out)
    plot_losses(out / "loss_curves.png", out)
    plot_layers(out / "layers.png", out)
    write_text_atomic(out / "results.json", json.dumps({"selected": chosen, "gains": pretraining_gains(chosen)}, indent=1))
    text = "\n".join([
        "# music-ssl demo report", "",
        f"Machine: {platform.node()} ({os.cpu_count()} CPU cores, {'CUDA' if settings.use_cuda() else 'CPU only'}); "
        f"this run took {seconds / 60:.1f} min (reused stages count 0). Corpus: {settings.n_pieces} pieces of "
        f"{settings.piece_seconds:g} s + {settings.n_notes} single notes; k = {settings.n_clusters}; "
        f"{settings.hubert_updates} updates per MusicHuBERT iteration, {settings.music2vec_updates} for music2vec.", "",
        "## Probe results", "",
        "Test metric ×100 (mean ± 95% CI over seeds) of the hidden state chosen on validation (in brackets; "
        "`weighted_sum` = softmax-weighted sum of all states). key: mir_eval weighted score; instrument, pitch: "
        "accuracy; beat: mir_eval F-measure (±70 ms) after madmom's DBN.", "",
        results_table(chosen), "### Did pretraining help?", "", gains_text(pretraining_gains(chosen)),
        "## Pretraining", "", "![loss curves](loss_curves.png)", "",
        "## Per-layer probes", "", "![layers](layers.png)", "",
        "## Stages", "", stages_table(results), "",
        "## Where the files are", "",
        f"- corpus (audio, MIDI, task CSVs): `{out / 'corpus'}`",
        f"- manifests and k-means labels: `{out / 'manifest'}`, `{out / 'labels'}`",
        f"- checkpoints and training logs: `{out / 'checkpoints'}/<run>/checkpoint_last.pt`, `…/hydra/hydra_train.log`",
        f"- probe tables per source (Markdown, CSV, JSON, plot): `{out / 'probe'}/<source>/`",
        f"- each stage's command output: `{out / '.stages'}/<stage>.log`", "",
    ])
    write_text_atomic(out / "report.md", text)
    return out / "report.md"
