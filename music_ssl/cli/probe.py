"""Probe a representation on MIR tasks.

    music-ssl-probe --config-name music2vec source.path=ckpt.pt data_root=/data/mir
    music-ssl-probe --config-name demo data_root=demo_out/corpus out_dir=probe_out protocol.seeds=[0,1,2]
    music-ssl-probe --list-tasks
    music-ssl-probe --list-protocols        # the presets: settings, sources, paper text · authors' code · ours
    music-ssl-probe --list-references       # published model + protocol names for source.reference
    music-ssl-probe -m --config-name demo data_root=D source.kind=checkpoint source.path=a.pt,b.pt \
        +run=slurm_cpu hydra.sweep.dir=SWEEP   # a sweep: one job per checkpoint (here: one Slurm job each)
    music-ssl-probe --gather SWEEP            # the sweep's reports in one table (SWEEP/gathered.{md,csv})

The config is composed with hydra (key=value overrides as in any hydra app; the schema with every key's help is
``music_ssl/probe/config.py``). Writes results.md / results.csv / probes.csv / results.json / layers.png to
``out_dir`` and prints the results table. Logging level from the LOGLEVEL environment variable (default INFO).

``-m`` (``--multirun``) hands the command line to hydra's multirun: one job per combination of the comma-separated
overrides, run by the launcher the overrides choose (hydra's own: one after the other; ``+run=slurm_cpu`` in the
probe configs' ``run/`` group, or ``hydra/launcher=submitit_slurm``: one Slurm job each). Each job writes its report
into its own hydra job folder (``out_dir`` is that folder unless given); ``--gather`` reads them all.
"""
import argparse
import logging
import os
import sys
from pathlib import Path

from ..core.resources import PROBE_CONFIG_DIR
from .common import emit, run_main

DEFAULT_CONFIG_DIR = PROBE_CONFIG_DIR
MULTIRUN_FLAGS = ("-m", "--multirun")
JOB_OUT_DIR = "out_dir=${hydra:runtime.output_dir}"  # a sweep's job reports into its own hydra job folder
logger = logging.getLogger(__name__)


def list_protocols() -> str:
    """Every preset with its settings, source and docstring table (``protocols.describe``)."""
    from music_ssl.probe.protocols import PROTOCOLS, describe, get_protocol

    return "\n".join(describe(get_protocol(name)) for name in PROTOCOLS)


def list_references() -> str:
    """One line per published reference: name, paper/table, tasks."""
    from music_ssl.probe.published import published_rows, references

    lines = []
    for name in references():
        rows = [r for r in published_rows() if r["reference"] == name]
        tables = sorted({f"{r['paper']}, {r['table']}" for r in rows})
        tasks = sorted({r["task"] for r in rows})
        lines.append(f"{name:36s} protocol {rows[0]['protocol']:8s} {'; '.join(tables)}: {', '.join(tasks)}")
    return "\n".join(lines)


def yaml_error_in(err: BaseException):
    """The PyYAML error ``err`` is or was raised from (hydra may wrap it), or None."""
    import yaml

    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, yaml.YAMLError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def main(config_dir: str = str(DEFAULT_CONFIG_DIR), config_name: str = None, overrides: list = (),
         list_tasks: bool = False, list_protocols_: bool = False, list_references_: bool = False) -> dict:
    """Compose ``<config_dir>/<config_name>.yaml`` with ``overrides`` and run it; returns the summary."""
    from music_ssl.probe import run_probe
    from music_ssl.probe.config import register_schema, yaml_syntax_error
    from music_ssl.probe.errors import ProbeConfigError
    from music_ssl.probe.datasets import DATASETS

    if list_tasks:
        emit("\n".join(f"{name:20s} {spec.type:11s} {spec.layout}" for name, spec in sorted(DATASETS.items())))
        return {}
    if list_protocols_ or list_references_:
        emit(list_protocols() if list_protocols_ else list_references())
        return {}
    if not config_name:
        raise ProbeConfigError("--config-name is required (a YAML in --config-dir, e.g. demo).")
    folder = Path(config_dir).resolve()
    if not (folder / f"{config_name}.yaml").exists():
        raise ProbeConfigError(f"{folder / (config_name + '.yaml')}: probe config not found; "
                               f"available: {sorted(p.stem for p in folder.glob('*.yaml'))}.")
    from hydra import compose, initialize_config_dir

    register_schema()
    with initialize_config_dir(config_dir=str(folder), version_base=None):
        try:
            cfg = compose(config_name=config_name, overrides=list(overrides))
        except Exception as err:  # a YAML syntax error (hydra lets PyYAML's through): one line with file:line
            syntax = yaml_error_in(err)
            if syntax is None:
                raise
            raise yaml_syntax_error(syntax, folder / f"{config_name}.yaml") from None
    summary = run_probe(cfg)
    emit(Path(summary["outputs"]["results.md"]).read_text())
    return summary


def probe_job(cfg) -> dict:
    """One job of ``music-ssl-probe -m`` (in the process hydra's launcher runs it in): the probe of ``cfg``;
    returns the report's files (what travels back to the launching process)."""
    from music_ssl.probe import run_probe

    summary = run_probe(cfg)
    logger.info("probe report: %s", summary["outputs"]["results.md"])
    return summary["outputs"]


def multirun(args: list) -> None:
    """``music-ssl-probe -m ARGS``: hydra's multirun of :func:`probe_job` over ``ARGS`` (hydra's command line:
    ``--config-dir`` defaults to the shipped probe configs; ``out_dir`` to each job's folder). Hydra parses
    ``sys.argv``, so it is set to these arguments; an expected error of a job ends the run with one ``error:`` line
    (``music_ssl.run_errors``)."""
    import hydra

    from music_ssl.probe.config import register_schema

    register_schema()
    args = list(args)
    if not any(a == "--config-dir" or a.startswith(("--config-dir=", "-cd")) for a in args):
        args = ["--config-dir", str(DEFAULT_CONFIG_DIR), *args]
    if not any(a.startswith("out_dir=") for a in args):
        args.append(JOB_OUT_DIR)
    sys.argv = [sys.argv[0], *args]
    os.environ["HYDRA_FULL_ERROR"] = "1"  # a bad override or YAML reaches run_main (one line), not hydra's report
    hydra.main(config_path=None, config_name=None, version_base=None)(probe_job)()


def gather_reports(folders: list) -> dict:
    """``music-ssl-probe --gather DIR [--gather DIR …]``: every report under the folders in one table."""
    from music_ssl.probe.gather import gather

    result = gather(folders)
    emit(Path(result["outputs"]["gathered.md"]).read_text())
    return result


def cli() -> None:
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    if any(flag in sys.argv[1:] for flag in MULTIRUN_FLAGS):
        return run_main(multirun, {"args": sys.argv[1:]}, (HydraException, OmegaConfBaseException))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-dir", dest="config_dir", default=str(DEFAULT_CONFIG_DIR),
                        help="folder of probe YAMLs (default: the shipped ones, $(music-ssl-config-dir)/probe)")
    parser.add_argument("--config-name", dest="config_name", help="YAML name without .yaml")
    parser.add_argument("--list-tasks", dest="list_tasks", action="store_true", help="list registry tasks")
    parser.add_argument("--list-protocols", dest="list_protocols_", action="store_true",
                        help="print the protocol presets (ma2023, mulap, marble, jukemir) with settings, sources and a "
                             "table per preset: each setting as the paper's text, the authors' code (file) and ours")
    parser.add_argument("--list-references", dest="list_references_", action="store_true",
                        help="print the published model + protocol names usable as source.reference")
    parser.add_argument("--gather", action="append", metavar="DIR",
                        help="gather the reports (results.json) under DIR (repeatable; e.g. a sweep's "
                             "hydra.sweep.dir) into one table: DIR/gathered.md (printed) and DIR/gathered.csv")
    parser.add_argument("overrides", nargs="*", help="hydra-style key=value overrides")
    parser.epilog = "-m / --multirun: a sweep through hydra's multirun (see above); its own hydra command line."
    args = parser.parse_args()
    if args.gather:
        run_main(gather_reports, {"folders": args.gather})
        return
    del args.gather
    run_main(main, vars(args), (HydraException, OmegaConfBaseException))


if __name__ == "__main__":
    cli()
