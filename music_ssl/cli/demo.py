"""`make demo`: the whole pipeline on the embedded demo corpus, from nothing to a report.

    music-ssl-demo [--out-dir demo_out] [--n-pieces 400] [--n-notes 600] [--hubert-updates 1000] [--music2vec2] ...

Stages: corpus -> manifest -> MFCC k-means labels -> MusicHuBERT tiny (iteration 1) -> layer labels ->
MusicHuBERT tiny (iteration 2) -> music2vec tiny -> probes (key, instrument, note_instrument, pitch, beat) of both
checkpoints, random inits and the CHROMA / MFCC baselines -> demo_out/report.md (training curves, MusicHuBERT's
validation accuracy beside the majority-label rate, music2vec's target std and EMA decay, probe gains).
--music2vec2 adds music2vec2 tiny (data2vec 2.0's recipe): one more training run and two more probe runs, a
column each in the report. Each stage
is the toolkit's own command; finished stages are reused on a rerun (see music_ssl/demo/pipeline.py). Masks are
seeded from --seed, so a rerun gives the same checkpoints and table. Logging level from LOGLEVEL (default INFO).
"""
import argparse
from pathlib import Path

from music_ssl.core.device import DEVICE_HELP

from .common import emit, run_main


def main(**settings) -> Path:
    from music_ssl.demo.pipeline import DemoSettings, run_demo

    return run_demo(DemoSettings(**settings))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out-dir", dest="out_dir", type=Path, default=Path("demo_out"), help="output folder (demo_out)")
    p.add_argument("--n-pieces", dest="n_pieces", type=int, default=400, help="6-s multi-instrument pieces (400)")
    p.add_argument("--n-notes", dest="n_notes", type=int, default=600, help="1.5-s single notes (600)")
    p.add_argument("--piece-seconds", dest="piece_seconds", type=float, default=6.0, help="seconds per piece (6)")
    p.add_argument("--seed", type=int, default=0, help="corpus, k-means and training seed (0)")
    p.add_argument("--n-clusters", dest="n_clusters", type=int, default=100, help="k of both label sets (100)")
    p.add_argument("--label-layer", dest="label_layer", type=int, default=3,
                   help="hidden state of iteration 1 clustered for iteration 2 (3 of the tiny model's 4)")
    p.add_argument("--hubert-updates", dest="hubert_updates", type=int, default=1000,
                   help="updates per MusicHuBERT iteration (1000)")
    p.add_argument("--music2vec-updates", dest="music2vec_updates", type=int, default=1000,
                   help="music2vec updates (1000; at 300 no probe gain separates from the random init)")
    p.add_argument("--probe-seeds", dest="probe_seeds", type=int, default=3, help="seeds per probe config (3)")
    p.add_argument("--probe-epochs", dest="probe_epochs", type=int, default=None,
                   help="most epochs per probe (default: config/probe/demo.yaml's)")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--music2vec2", action="store_true",
                   help="also train music2vec2 tiny (data2vec 2.0's recipe) for --music2vec-updates and probe it and "
                        "its random init in the report (two more probe runs; off by default)")
    return p


def cli() -> None:
    report = run_main(main, vars(build_parser().parse_args()))
    emit(report.read_text())


if __name__ == "__main__":
    cli()
