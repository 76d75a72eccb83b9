"""One table from many probe runs: the reports a sweep's jobs wrote, one folder each.

``music-ssl-probe -m …`` runs one probe job per combination of its comma-separated overrides (checkpoints, tasks,
seeds, …; one Slurm job each through hydra-submitit-launcher) and each job writes its own report
(``results.json``/``results.csv``/``results.md``, ``runner.run_probe``) into its hydra job folder
(``<hydra.sweep.dir>/<job number>``). :func:`gather` reads every ``results.json`` under the folders given and writes

* ``gathered.csv``: every row of every run (task × layer option), with the run's name, source kind, source path
  (a checkpoint, HF folder or Jukebox feature folder; empty for CHROMA/MFCC), whether it is the random init, and
  the run's folder: one table for a spreadsheet or pandas;
* ``gathered.md``: per run and task, the layer option chosen on valid (★ in each ``results.md``), metrics × 100,
  test mean ± 95% CI over seeds.

Nothing is skipped silently: a hydra job folder (one holding ``.hydra/``) without ``results.json`` is a job that
did not finish; it is logged and listed under the Markdown table.
"""
import json
import logging
from pathlib import Path

from ..core.atomic import write_text_atomic
from .errors import ProbeDataError
from .report import RESULT_COLUMNS, _fmt, csv_text

logger = logging.getLogger(__name__)

REPORT = "results.json"
GATHERED_COLUMNS = ["folder", "source_path", "random_init"] + RESULT_COLUMNS
MARKDOWN_HEAD = ["run", "source", "task", "layer ★", "metric", "test", "valid", "seeds", "folder"]


def find_reports(folders: list) -> tuple:
    """(every ``results.json`` under ``folders``, hydra job folders under them without one), both sorted."""
    reports, unfinished = [], []
    for folder in map(Path, folders):
        if not folder.is_dir():
            raise ProbeDataError(f"{folder}: no such folder; give the sweep folder of music-ssl-probe -m "
                                 "(hydra.sweep.dir) or folders holding results.json.")
        reports += folder.rglob(REPORT)
        unfinished += [job.parent for job in folder.rglob(".hydra") if not (job.parent / REPORT).is_file()]
    return sorted(set(reports)), sorted(set(unfinished))


def report_rows(path: Path, base: Path) -> list:
    """The rows of one run's ``results.json``, each with the run's identity and folder (relative to ``base``)."""
    try:
        summary = json.loads(path.read_text())
        source = summary["config"]["source"]
        selected = summary["selected"]
    except (ValueError, KeyError, TypeError) as err:
        raise ProbeDataError(f"{path}: not a probe report ({type(err).__name__}: {err}); it is written by "
                             "music-ssl-probe; rerun that job.") from None
    folder = path.parent.relative_to(base) if path.parent.is_relative_to(base) else path.parent
    identity = {"folder": str(folder), "run": summary["name"], "source": source["kind"],
                "source_path": source.get("path") or "", "random_init": bool(source.get("random_init"))}
    return [{**r, **identity} for r in selected]


def markdown(rows: list, unfinished: list, base: Path) -> str:
    """The runs' layer options chosen on valid, one line per run and task."""
    lines = ["| " + " | ".join(MARKDOWN_HEAD) + " |", "|" + "---|" * len(MARKDOWN_HEAD)]
    for r in (r for r in rows if r.get("best_on_valid")):
        source = r["source_path"] or r["source"]
        if r["random_init"]:
            source += " (random init)"
        cells = [r["run"], source, r["task"], r["layer"], r["metric"], _fmt(r["test_mean"], r["test_ci95"]),
                 _fmt(r["valid_mean"], r["valid_ci95"]), str(r["seeds"]), r["folder"]]
        lines.append("| " + " | ".join(cells) + " |")
    text = (f"# Probe results gathered from {base}\n\nmetrics x100, test mean ± 95% CI over seeds, the layer option "
            "chosen on valid per run and task (every layer option: gathered.csv).\n\n" + "\n".join(lines) + "\n")
    if unfinished:
        text += f"\n{len(unfinished)} job folder(s) without {REPORT} (not finished, or failed: see their logs):\n"
        text += "".join(f"- {job}\n" for job in unfinished)
    return text


def gather(folders: list, out_dir=None) -> dict:
    """Gather the probe reports under ``folders`` into ``gathered.csv`` and ``gathered.md`` in ``out_dir``
    (default: the first folder). Returns ``{"rows": [...], "unfinished": [...], "outputs": {name: path}}``."""
    folders = [Path(f) for f in folders]
    base = folders[0].resolve()
    reports, unfinished = find_reports(folders)
    if not reports:
        raise ProbeDataError(f"no {REPORT} under {', '.join(map(str, folders))}: a sweep's jobs write one each "
                             "(music-ssl-probe -m …); are they still running?")
    rows = [row for path in reports for row in report_rows(path.resolve(), base)]
    for job in unfinished:
        logger.warning("%s: a probe job folder without %s (not finished, or failed)", job, REPORT)
    out_dir = Path(out_dir) if out_dir else folders[0]
    outputs = {"gathered.csv": out_dir / "gathered.csv", "gathered.md": out_dir / "gathered.md"}
    write_text_atomic(outputs["gathered.csv"], csv_text(rows, GATHERED_COLUMNS))
    write_text_atomic(outputs["gathered.md"], markdown(rows, unfinished, base))
    logger.info("gathered %d rows of %d probe runs into %s", len(rows), len(reports), outputs["gathered.csv"])
    return {"rows": rows, "unfinished": [str(u) for u in unfinished],
            "outputs": {name: str(path) for name, path in outputs.items()}}
