"""Generate the demo corpus: labelled music pieces (key, instrument, tempo, beats) and single notes (pitch, instrument),
rendered offline with FluidSynth + a General MIDI soundfont, deterministic from --seed.

    music-ssl-make-corpus OUT_DIR [--n-pieces 120] [--n-notes 200] [--piece-seconds 6] [--note-seconds 1.5]
                                        [--seed 0] [--soundfont PATH] [--jobs N]

Re-running with the same arguments reuses the finished corpus; see music_ssl/demo/corpus.py for the layout.
Logging level from the LOGLEVEL environment variable (default INFO).
"""
import argparse
import logging

from .common import run_main


def main(out_dir, n_pieces=120, n_notes=200, piece_seconds=6.0, note_seconds=1.5, seed=0, soundfont=None,
         jobs=None, sample_rate=16000):
    from music_ssl.demo.corpus import make_corpus

    corpus = make_corpus(out_dir, n_pieces=n_pieces, n_notes=n_notes, piece_seconds=piece_seconds,
                         note_seconds=note_seconds, seed=seed, soundfont=soundfont, jobs=jobs,
                         sample_rate=sample_rate)
    state = "reused" if corpus.reused else "written"
    for task, path in corpus.task_csvs.items():
        logging.getLogger("make_corpus").info("%s task (%s): %s", task, state, path)
    return corpus


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out_dir", help="output folder (new, empty, or a corpus made by this tool)")
    p.add_argument("--n-pieces", type=int, default=120, help="multi-instrument pieces (default 120)")
    p.add_argument("--n-notes", type=int, default=200, help="single notes (default 200)")
    p.add_argument("--piece-seconds", type=float, default=6.0, help="seconds per piece (default 6)")
    p.add_argument("--note-seconds", type=float, default=1.5, help="seconds per note clip (default 1.5)")
    p.add_argument("--seed", type=int, default=0, help="random seed: same seed, same corpus (default 0)")
    p.add_argument("--soundfont", default=None, help="General MIDI .sf2 (default /usr/share/sounds/sf2/FluidR3_GM.sf2)")
    p.add_argument("--jobs", type=int, default=None, help="concurrent FluidSynth processes (default: cores, max 8)")
    p.add_argument("--sample-rate", type=int, default=16000, help="Hz (default 16000)")
    return p


def cli():
    run_main(main, vars(build_parser().parse_args()), (ValueError, OSError))


if __name__ == "__main__":
    cli()
