"""Scan audio folders into fairseq manifests ``{dest}/train.tsv`` and ``{dest}/valid.tsv``, or audit manifests.

    music-ssl-manifest AUDIO_DIR --dest DIR [--valid-percent 0.01] [--seed 0] [--ext wav,flac,ogg,mp3] [--jobs 4]
    music-ssl-manifest AUDIO_DIR --dest DIR --convert-dir DIR --segment-seconds 30 [--jobs 4] [--strict]
    music-ssl-manifest audit DIR [--jobs 4] [--min-seconds 0] [--write-clean] [--splits train,valid]

Each manifest is the root folder on the first line, then ``relpath<TAB>num_samples`` (16 kHz mono audio).
Without ``--convert-dir`` files are listed as they are: each is decoded to the end, and files that are not
16 kHz mono (stereo included), do not decode to the end, are not audio, or are shorter than ``--min-seconds``
(default 1 s) are skipped; with it every track is converted once to 16 kHz mono FLAC (stereo downmixed, cut into
``--segment-seconds`` clips if given) so training never decodes mp3 or resamples on the fly. Tracks, not clips, are
split into train/valid (a split without rows is not written). Files whose names a manifest cannot hold (a TAB, a
newline, bytes that are not UTF-8) are skipped too. Skipped files are reported one line each and counted, fatal only
with ``--strict``. Worker processes (``--jobs``) end with the command, even when it is killed.

``audit DIR`` decodes every row of every ``DIR/{split}.tsv`` and reports each bad row on one line (missing,
not audio, unreadable, truncated, empty, wrong rate, not mono, sample count differing from the manifest, shorter
than the model's 400-sample receptive field or ``--min-seconds``), writes ``{split}.bad.tsv`` and, with
``--write-clean``, ``{split}.clean.tsv`` beside the original. The result is cached (``{split}.audit.json``), an
interrupted audit resumes, and the pretraining tasks' pre-flight reuses it. Without ``--write-clean`` bad rows
end in one ``error:`` line (exit 1). (An audio folder named ``audit`` is passed as ``./audit``.)
Logging level from LOGLEVEL.
"""
import argparse
import logging
import sys
from typing import Dict, List, Optional

from music_ssl.data.audio import AUDIO_EXTENSIONS
from music_ssl.data.convert import MIN_SECONDS
from music_ssl.data.manifest_builder import ManifestSummary, build_manifests

from .common import run_main

logger = logging.getLogger("music_ssl.cli.manifest")


def main(audio_dir: str, dest: str, valid_percent: float = 0.01, seed: int = 0, ext: str = ",".join(AUDIO_EXTENSIONS),
         convert_dir: str = None, segment_seconds: float = None, min_seconds: float = MIN_SECONDS,
         strict: bool = False, jobs: int = 1) -> ManifestSummary:
    """Build the manifests (see :func:`music_ssl.data.manifest_builder.build_manifests`) and log the summary."""
    summary = build_manifests(audio_dir, dest, valid_percent, seed, [e for e in ext.split(",") if e], convert_dir,
                              segment_seconds, min_seconds, strict, jobs)
    for line in summary.lines():
        logger.info(line)
    logger.info("wrote %s", " and ".join(f"{dest}/{split}.tsv" for split, n in summary.rows.items() if n))
    return summary


def audit(manifest_dir: str, jobs: int = 1, min_seconds: float = 0.0, write_clean: bool = False,
          splits: Optional[str] = None) -> Dict:
    """Audit every manifest of ``manifest_dir`` (see :mod:`music_ssl.data.audit`); bad rows without
    ``write_clean`` raise one :class:`~music_ssl.errors.DataError` line after each row was logged."""
    from music_ssl.data.audit import audit_dir
    from music_ssl.data.errors import ManifestError

    results = audit_dir(manifest_dir, min_seconds, jobs, write_clean, [s for s in (splits or "").split(",") if s])
    for split, result in results.items():
        kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(result.counts().items()))
        logger.info("%s: %d rows, %d bad%s (%s, %.1f s)", result.manifest, result.rows, len(result.bad),
                    f" ({kinds})" if kinds else "", "cached audit" if result.cached else "decoded", result.seconds)
        if write_clean:
            logger.info("wrote %s/%s.clean.tsv (%d rows) and %s.bad.tsv", manifest_dir, split,
                        result.rows - len(result.bad), split)
    bad = {split: len(r.bad) for split, r in results.items() if r.bad}
    if bad and not write_clean:
        listed = ", ".join(f"{split}.bad.tsv ({n} rows)" for split, n in bad.items())
        raise ManifestError(f"{manifest_dir}: {sum(bad.values())} bad rows, listed in {listed}; fix or restore those "
                            f"files, or rerun with --write-clean and train on {{split}}.clean.tsv "
                            f"(task.data as is, dataset.train_subset=train.clean dataset.valid_subset=valid.clean).")
    return results


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("audio_dir", help="folder scanned recursively for audio files (or `audit`: see above)")
    p.add_argument("--dest", required=True, help="output folder for train.tsv / valid.tsv")
    p.add_argument("--valid-percent", type=float, default=0.01, help="fraction of tracks for valid (default 0.01)")
    p.add_argument("--seed", type=int, default=0, help="seed of the train/valid draw (default 0)")
    p.add_argument("--ext", default=",".join(AUDIO_EXTENSIONS), help="comma-separated extensions (default %(default)s)")
    p.add_argument("--convert-dir", help="convert every track to 16 kHz mono FLAC in this folder and list those")
    p.add_argument("--segment-seconds", type=float, help="with --convert-dir: cut tracks into clips of this length")
    p.add_argument("--min-seconds", type=float, default=MIN_SECONDS,
                   help="skip files, and final clips of --segment-seconds, shorter than this (default %(default)g)")
    p.add_argument("--strict", action="store_true", help="fail if any file is unreadable or unusable")
    p.add_argument("--jobs", type=int, default=1, help="worker processes decoding or converting (default 1)")
    return p


def audit_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="music-ssl-manifest audit", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("manifest_dir", help="folder holding the {split}.tsv manifests")
    p.add_argument("--jobs", type=int, default=1, help="worker processes decoding rows (default 1)")
    p.add_argument("--min-seconds", type=float, default=0.0,
                   help="rows shorter than this are bad too (default 0: only the 400-sample receptive field)")
    p.add_argument("--write-clean", action="store_true", help="write {split}.clean.tsv without the bad rows")
    p.add_argument("--splits", help="comma-separated splits to audit (default: every *.tsv of the folder)")
    return p


def cli(argv: Optional[List[str]] = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["audit"]:
        run_main(audit, vars(audit_parser().parse_args(argv[1:])))
    else:
        run_main(main, vars(parser().parse_args(argv)))


if __name__ == "__main__":
    cli()
