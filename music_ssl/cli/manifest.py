"""Scan audio folders into fairseq manifests ``{dest}/train.tsv`` and ``{dest}/valid.tsv``.

    music-ssl-manifest AUDIO_DIR --dest DIR [--valid-percent 0.01] [--seed 0] [--ext wav,flac,ogg,mp3]
    music-ssl-manifest AUDIO_DIR --dest DIR --convert-dir DIR --segment-seconds 30 [--jobs 4] [--strict]

Each manifest is the root folder on the first line, then ``relpath<TAB>num_samples`` (16 kHz mono audio).
Without ``--convert-dir`` files are listed as they are and files that are not 16 kHz mono are skipped; with
it every track is converted once to 16 kHz mono FLAC (cut into ``--segment-seconds`` clips if given) so
training never decodes mp3 or resamples on the fly. Tracks, not clips, are split into train/valid.
Unreadable files are reported and counted, not fatal unless ``--strict``. Logging level from LOGLEVEL.
"""
import argparse
import logging

from music_ssl.data.audio import AUDIO_EXTENSIONS
from music_ssl.data.manifest_builder import ManifestSummary, build_manifests

from .common import run_main

logger = logging.getLogger("music_ssl.cli.manifest")


def main(audio_dir: str, dest: str, valid_percent: float = 0.01, seed: int = 0, ext: str = ",".join(AUDIO_EXTENSIONS),
         convert_dir: str = None, segment_seconds: float = None, min_seconds: float = 2.0, strict: bool = False,
         jobs: int = 1) -> ManifestSummary:
    """Build the manifests (see :func:`music_ssl.data.manifest_builder.build_manifests`) and log the summary."""
    summary = build_manifests(audio_dir, dest, valid_percent, seed, [e for e in ext.split(",") if e], convert_dir,
                              segment_seconds, min_seconds, strict, jobs)
    for line in summary.lines():
        logger.info(line)
    logger.info("wrote %s/train.tsv and %s/valid.tsv", dest, dest)
    return summary


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("audio_dir", help="folder scanned recursively for audio files")
    p.add_argument("--dest", required=True, help="output folder for train.tsv / valid.tsv")
    p.add_argument("--valid-percent", type=float, default=0.01, help="fraction of tracks for valid (default 0.01)")
    p.add_argument("--seed", type=int, default=0, help="seed of the train/valid draw (default 0)")
    p.add_argument("--ext", default=",".join(AUDIO_EXTENSIONS), help="comma-separated extensions (default %(default)s)")
    p.add_argument("--convert-dir", help="convert every track to 16 kHz mono FLAC in this folder and list those")
    p.add_argument("--segment-seconds", type=float, help="with --convert-dir: cut tracks into clips of this length")
    p.add_argument("--min-seconds", type=float, default=2.0,
                   help="with --segment-seconds: drop final clips shorter than this (default 2)")
    p.add_argument("--strict", action="store_true", help="fail if any file is unreadable or unusable")
    p.add_argument("--jobs", type=int, default=1, help="worker processes for conversion (default 1)")
    return p


def cli() -> None:
    run_main(main, vars(parser().parse_args()))


if __name__ == "__main__":
    cli()
