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
import logging

from music_ssl.data.audio import SAMPLE_RATE
from music_ssl.data.label_alignment import TOLERANCE_SECONDS

from .common import run_main

logger = logging.getLogger("music_ssl.cli.kmeans_labels")


def features(tsv_dir, split, nshard, rank, feat_dir, feature="mfcc", n_mfcc=13, checkpoint=None, layer=None,
             device="auto", chunk_seconds=30.0):
    from music_ssl.labels import dump_features, make_extractor
    from music_ssl.device import resolve_device

    extractor = make_extractor(feature, n_mfcc, checkpoint, layer, str(resolve_device(device)), chunk_seconds)
    return dump_features(tsv_dir, split, nshard, rank, feat_dir, extractor)


def fit(feat_dir, split, nshard, km_path, n_clusters, percent=0.1, max_frames=None, seed=0, backend="torch",
        device="auto", max_iter=100, tol=1e-3, max_sample_gb=8.0):
    from music_ssl.labels import fit_stage

    return fit_stage(feat_dir, split, nshard, km_path, n_clusters, percent, max_frames, seed, backend, device,
                     max_iter, tol, max_sample_gb)


def apply(feat_dir, split, km_path, nshard, rank, lab_dir, device="auto"):
    from music_ssl.labels import apply_stage

    return apply_stage(feat_dir, split, km_path, nshard, rank, lab_dir, device)


def merge(lab_dir, split, nshard, out_dir=None):
    from music_ssl.labels import merge_stage

    return merge_stage(lab_dir, split, nshard, out_dir)


def check(tsv_dir, lab_dir, splits=("train", "valid"), label_rate=None, km_path=None, reference=None,
          reference_column="label", tolerance=TOLERANCE_SECONDS, sample_rate=SAMPLE_RATE):
    from pathlib import Path

    from music_ssl.labels import KMeansModel, LabelPrepError, check_stage
    from music_ssl.labels.pipeline import MODEL_NAME

    if label_rate is None:
        km_path = Path(km_path or Path(lab_dir) / MODEL_NAME)
        if not km_path.is_file():
            raise LabelPrepError(f"{km_path}: not found, so the label rate is unknown; pass --label-rate "
                                 f"(100 for MFCC labels, 50 for layer labels) or --km-path.")
        label_rate = KMeansModel.load(km_path).frame_rate
    from music_ssl.labels.apply import check_splits_agree

    check_splits_agree(lab_dir, splits)
    return {split: check_stage(tsv_dir, lab_dir, split, label_rate, sample_rate, tolerance, reference,
                               reference_column) for split in splits}


def all_stages(tsv_dir, out_dir, **kwargs):
    from music_ssl.labels import run_all

    return run_all(tsv_dir, out_dir, **kwargs)


COMMANDS = {"features": features, "fit": fit, "apply": apply, "merge": merge, "check": check, "all": all_stages}


def main(command: str, **kwargs):
    """Run subcommand ``command`` with its arguments (the CLI's ``main(**vars(args))``)."""
    return COMMANDS[command](**kwargs)


def add_feature_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--feature", choices=("mfcc", "layer"), default="mfcc",
                   help="mfcc: kaldi MFCC + deltas (100 Hz); layer: hidden states of --checkpoint (50 Hz)")
    p.add_argument("--n-mfcc", type=int, default=13, help="MFCC coefficients: 13 → 39-d, 20 → 60-d (default 13)")
    p.add_argument("--checkpoint", help="music2vec / MusicHuBERT checkpoint for --feature layer")
    p.add_argument("--layer", type=int, help="hidden state of --checkpoint: 0 = Transformer input, i = layer i")
    p.add_argument("--chunk-seconds", type=float, default=30.0, help="encoder chunk for long files (default 30)")


def add_fit_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n-clusters", type=int, required=True, help="k")
    p.add_argument("--percent", type=float, default=0.1,
                   help="fraction of frames to fit on, in (0, 1] (default 0.1, fairseq's recipe; at least 256 per "
                        "cluster or all)")
    p.add_argument("--max-frames", type=int, default=None,
                   help="fixed cap of the fitted sample (default none: --max-sample-gb caps it)")
    p.add_argument("--max-sample-gb", type=float, default=8.0,
                   help="memory budget of the fitted sample, frames × dim × 4 bytes (default 8 GiB)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample and of k-means++ (default 0)")
    p.add_argument("--backend", choices=("torch", "sklearn"), default="torch",
                   help="torch: k-means++ + Lloyd on GPU/CPU; sklearn: fairseq's MiniBatchKMeans (parity)")
    p.add_argument("--max-iter", type=int, default=100, help="torch backend: Lloyd iterations at most (default 100)")
    p.add_argument("--tol", type=float, default=1e-3,
                   help="torch backend: stop when inertia improves by less than this fraction (default 1e-3)")


def add_device_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cuda, cuda:1, cpu (default auto)")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = top.add_subparsers(dest="command", required=True)
    p = sub.add_parser("features", help="dump features of one shard of a split")
    for name in ("tsv_dir", "split"):
        p.add_argument(name)
    p.add_argument("nshard", type=int)
    p.add_argument("rank", type=int)
    p.add_argument("feat_dir")
    add_feature_args(p)
    add_device_arg(p)
    p = sub.add_parser("fit", help="fit k-means on a sample of a split's feature shards")
    p.add_argument("feat_dir")
    p.add_argument("split")
    p.add_argument("nshard", type=int)
    p.add_argument("km_path", help="output model (.safetensors)")
    add_fit_args(p)
    add_device_arg(p)
    p = sub.add_parser("apply", help="label one feature shard with a k-means model")
    for name in ("feat_dir", "split", "km_path"):
        p.add_argument(name)
    p.add_argument("nshard", type=int)
    p.add_argument("rank", type=int)
    p.add_argument("lab_dir")
    add_device_arg(p)
    p = sub.add_parser("merge", help="concatenate a split's label shards into {split}.km")
    p.add_argument("lab_dir")
    p.add_argument("split")
    p.add_argument("nshard", type=int)
    p.add_argument("--out-dir", help="where {split}.km goes (default LAB_DIR)")
    p = sub.add_parser("check", help="alignment with the manifest + cluster-quality report")
    p.add_argument("tsv_dir")
    p.add_argument("lab_dir")
    add_check_args(p)
    p.add_argument("--label-rate", type=float, help="labels per second (default: from the k-means model)")
    p.add_argument("--km-path", help="model giving the label rate (default LAB_DIR/kmeans.safetensors)")
    p = sub.add_parser("all", help="features, fit, apply, merge and check for every split")
    p.add_argument("tsv_dir")
    p.add_argument("out_dir")
    add_feature_args(p)
    add_fit_args(p)
    add_device_arg(p)
    add_check_args(p)
    p.add_argument("--nshard", type=int, default=1, help="feature/label shards per split (default 1)")
    p.add_argument("--feat-dir", help="feature shards folder (default OUT_DIR/feat)")
    return top


def add_check_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--splits", nargs="+", default=["train", "valid"],
                   help="splits (TSV_DIR/{split}.tsv); `all` fits on the first (default train valid)")
    p.add_argument("--reference", help="CSV with `path` and a class column: purity / PNMI of the clusters")
    p.add_argument("--reference-column", default="label", help="class column of --reference (default label)")
    p.add_argument("--tolerance", type=float, default=TOLERANCE_SECONDS,
                   help="max |audio seconds - labels / label_rate| per row (default fairseq's 0.1)")


def cli() -> None:
    run_main(main, vars(parser().parse_args()), (FileNotFoundError,))


if __name__ == "__main__":
    cli()
