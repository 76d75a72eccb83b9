"""k-means pseudo-labels for MusicHuBERT: features → fit → apply → check, or ``all`` of them.

    music-ssl-kmeans all TSV_DIR OUT_DIR --feature mfcc --n-mfcc 13 --n-clusters 500 \\
        [--splits train valid] [--nshard N] [--percent 0.1] [--backend torch|sklearn] [--device auto]
    music-ssl-kmeans all TSV_DIR OUT_DIR --feature layer --checkpoint CKPT --layer 6 --n-clusters 2000

Stages alone, in fairseq's simple_kmeans shape (run ranks in parallel, then merge):

    music-ssl-kmeans features TSV_DIR SPLIT NSHARD RANK FEAT_DIR --feature mfcc
    music-ssl-kmeans fit FEAT_DIR SPLIT NSHARD KM_PATH --n-clusters 500
    music-ssl-kmeans apply FEAT_DIR SPLIT KM_PATH NSHARD RANK LAB_DIR
    music-ssl-kmeans merge LAB_DIR SPLIT NSHARD [--out-dir DIR]
    music-ssl-kmeans check TSV_DIR LAB_DIR [--splits train valid] [--reference CSV]

``all`` writes OUT_DIR/{split}.km, OUT_DIR/dict.km.txt (what task.label_dir expects; label_rate 100 for MFCC,
50 for layer features), kmeans.safetensors and report.json. Outputs are written atomically; re-running skips
complete shards and redoes partial ones. Logging level from LOGLEVEL.
"""
import argparse
import dataclasses
import logging
from enum import Enum
from typing import Union, get_args, get_origin

from music_ssl.data.audio import SAMPLE_RATE
from music_ssl.labels.settings import CheckSettings, FeatureSettings, FitSettings, LabelSettings, choices

from .common import run_main

logger = logging.getLogger("music_ssl.cli.kmeans_labels")

EPILOG = """Every --option is a setting of music_ssl.labels.settings (LabelSettings and its FeatureSettings,
FitSettings, CheckSettings: defaults, help and checks live there); the option is the setting's name with dashes,
e.g. --max-sample-gb sets max_sample_gb. Error messages name the setting: `percent=2.0: must be in (0, 1] ...`."""


def features(tsv_dir, split, nshard, rank, feat_dir, device="auto", **settings):
    from music_ssl.core.device import resolve_device
    from music_ssl.labels import dump_features, make_extractor

    extractor = make_extractor(FeatureSettings(**settings), str(resolve_device(device)))
    return dump_features(tsv_dir, split, nshard, rank, feat_dir, extractor)


def fit(feat_dir, split, nshard, km_path, device="auto", **settings):
    from music_ssl.labels import fit_stage

    return fit_stage(feat_dir, split, nshard, km_path, FitSettings(**settings), device)


def apply(feat_dir, split, km_path, nshard, rank, lab_dir, device="auto"):
    from music_ssl.labels import apply_stage

    return apply_stage(feat_dir, split, km_path, nshard, rank, lab_dir, device)


def merge(lab_dir, split, nshard, out_dir=None):
    from music_ssl.labels import merge_stage

    return merge_stage(lab_dir, split, nshard, out_dir)


def check(tsv_dir, lab_dir, splits=("train", "valid"), label_rate=None, sample_rate=SAMPLE_RATE, **settings):
    from music_ssl.labels import check_stage
    from music_ssl.labels.apply import check_splits_agree

    checks = CheckSettings(**settings)
    check_splits_agree(lab_dir, splits)
    return {split: check_stage(tsv_dir, lab_dir, split, label_rate, sample_rate, checks.tolerance, checks.reference,
                               checks.reference_column) for split in splits}


def all_stages(tsv_dir, out_dir, **settings):
    from music_ssl.labels import run_all

    return run_all(tsv_dir, out_dir, LabelSettings.from_flat(**settings))


COMMANDS = {"features": features, "fit": fit, "apply": apply, "merge": merge, "check": check, "all": all_stages}


def main(command: str, **kwargs):
    """Run subcommand ``command`` with its arguments (the CLI's ``main(**vars(args))``)."""
    return COMMANDS[command](**kwargs)


def add_settings_args(p: argparse.ArgumentParser, settings, names=None, required=()) -> None:
    """One option per field of the settings dataclass (those in ``names`` when given; nested settings are
    skipped): ``--field-name`` with the field's type, choices, default and help."""
    for f in dataclasses.fields(settings):
        if dataclasses.is_dataclass(f.type) or (names is not None and f.name not in names):
            continue
        kind, extra = f.type, {}
        if get_origin(kind) is Union:  # Optional[X]
            kind = next(arg for arg in get_args(kind) if arg is not type(None))
        if isinstance(kind, type) and issubclass(kind, Enum):  # a ChoiceEnum
            kind, extra["choices"] = str, choices(kind)
        elif get_origin(kind) in (tuple, list):
            kind, extra["nargs"] = get_args(kind)[0], "+"
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        shown = " ".join(map(str, default)) if isinstance(default, (tuple, list)) else default
        help_text = f.metadata["help"] + ("" if default is None or f.name in required else f" (default {shown})")
        p.add_argument("--" + f.name.replace("_", "-"), type=kind, default=default, required=f.name in required,
                       help=help_text, **extra)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(description=__doc__, epilog=EPILOG,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = top.add_subparsers(dest="command", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, description=help_text, epilog=EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)

    p = command("features", "dump features of one shard of a split")
    for name in ("tsv_dir", "split"):
        p.add_argument(name)
    p.add_argument("nshard", type=int)
    p.add_argument("rank", type=int)
    p.add_argument("feat_dir")
    add_settings_args(p, FeatureSettings)
    add_settings_args(p, LabelSettings, names=("device",))
    p = command("fit", "fit k-means on a sample of a split's feature shards")
    p.add_argument("feat_dir")
    p.add_argument("split")
    p.add_argument("nshard", type=int)
    p.add_argument("km_path", help="output model (.safetensors)")
    add_settings_args(p, FitSettings, required=("n_clusters",))
    add_settings_args(p, LabelSettings, names=("device",))
    p = command("apply", "label one feature shard with a k-means model")
    for name in ("feat_dir", "split", "km_path"):
        p.add_argument(name)
    p.add_argument("nshard", type=int)
    p.add_argument("rank", type=int)
    p.add_argument("lab_dir")
    add_settings_args(p, LabelSettings, names=("device",))
    p = command("merge", "concatenate a split's label shards into {split}.km")
    p.add_argument("lab_dir")
    p.add_argument("split")
    p.add_argument("nshard", type=int)
    p.add_argument("--out-dir", help="where {split}.km goes (default LAB_DIR)")
    p = command("check", "alignment with the manifest + cluster-quality report")
    p.add_argument("tsv_dir")
    p.add_argument("lab_dir")
    add_settings_args(p, LabelSettings, names=("splits",))
    add_settings_args(p, CheckSettings)
    p.add_argument("--label-rate", type=float, help="labels per second (default: the rate recorded beside the labels, "
                                                    "{split}.km.json; needed only for labels of other tools)")
    p = command("all", "features, fit, apply, merge and check for every split")
    p.add_argument("tsv_dir")
    p.add_argument("out_dir")
    add_settings_args(p, FeatureSettings)
    add_settings_args(p, FitSettings, required=("n_clusters",))
    add_settings_args(p, LabelSettings)
    add_settings_args(p, CheckSettings)
    return top


def cli() -> None:
    run_main(main, vars(parser().parse_args()), (FileNotFoundError,))


if __name__ == "__main__":
    cli()
