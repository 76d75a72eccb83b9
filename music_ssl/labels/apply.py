"""The apply stage: nearest-centroid labels for every manifest row, then merged files ``{split}.km`` and
``dict.km.txt`` in fairseq's format (one line of space-separated ints per manifest row; ``"<id> 1"`` per cluster).

Frames are labelled in blocks of whole rows (about ``BLOCK_BYTES`` of features per device call). Shard label files
``{split}_{rank}_{nshard}.km`` are written atomically with a marker (``.km.done``, JSON) keyed on the model and the
feature shard, so re-running skips complete shards. The marker also carries the model's key, k, frame rate and the
feature settings; ``merge`` refuses shards whose markers disagree (two k-means models, or two feature settings)
and writes the same provenance beside the merged file as ``{split}.km.json``. ``apply`` refuses features made with
settings other than those the model was fitted on.
"""
import json
import logging
import shutil
from pathlib import Path
from typing import Iterator, Tuple

import numpy as np
from tqdm import tqdm

from ..core.fingerprint import data_sha256, json_sha256
from ..core.atomic import atomic_path
from ..data.label_files import read_sidecar, sidecar_path, write_dictionary, write_sidecar
from .errors import LabelPrepError
from .features import feature_paths, load_shard
from .kmeans_file import KMeansModel
from .shards import clear_marker, is_done, mark_done, read_marker, shard_stem

logger = logging.getLogger(__name__)

BLOCK_BYTES = 1 << 28  # float32 features labelled per device call (1.7M frames of 39-d, 87k of 768-d)


def label_path(lab_dir, split: str, nshard: int, rank: int) -> Path:
    """``{lab_dir}/{split}_{rank}_{nshard}.km``."""
    return Path(lab_dir) / f"{shard_stem(split, rank, nshard)}.km"


def row_blocks(lengths: np.ndarray, block_frames: int) -> Iterator[Tuple[int, int]]:
    """Consecutive row ranges ``[first, last)`` of about ``block_frames`` frames (a longer row is a block alone)."""
    first, frames = 0, 0
    for row, n in enumerate(lengths.tolist()):
        frames += n
        if frames >= block_frames:
            yield first, row + 1
            first, frames = row + 1, 0
    if first < len(lengths):
        yield first, len(lengths)


def model_key(model: KMeansModel) -> str:
    """Fingerprint of a model's centroids and metadata."""
    return json_sha256({"centroids": data_sha256(model.centroids.tobytes()), **model.metadata})


def apply_stage(feat_dir, split: str, km_path, nshard: int, rank: int, lab_dir, device="auto") -> Path:
    """Label every row of feature shard ``rank`` of ``nshard`` with the model at ``km_path``.

    Writes ``{lab_dir}/{split}_{rank}_{nshard}.km`` (skipped when complete for this model and shard) and
    ``{lab_dir}/dict.km.txt``. Returns the label file.
    """
    model = KMeansModel.load(km_path)
    feats, lengths, marker = load_shard(feat_dir, split, nshard, rank)
    check_model_fits_features(model, km_path, feats, marker, feat_dir)
    out = label_path(lab_dir, split, nshard, rank)
    key = json_sha256({"model": model_key(model), "features": marker["key"]})
    write_dictionary(lab_dir, model.k)
    if is_done(out, key):
        logger.info("%s: complete, skipped", out)
        return out
    clear_marker(out)  # from here until mark_done the shard is incomplete (a kill → redone on the next run)
    predict, names = model.predictor(device), np.array([str(i) for i in range(model.k)], dtype=object)
    offsets = np.concatenate([[0], np.cumsum(lengths)])  # (R + 1,)
    with atomic_path(out) as tmp, open(tmp, "w") as f, tqdm(total=int(offsets[-1]), desc=out.stem, unit="frame",
                                                            unit_scale=True) as bar:
        for first, last in row_blocks(lengths, max(1, BLOCK_BYTES // (4 * model.dim))):
            block = check_finite_block(feats[offsets[first]: offsets[last]], offsets[first:last + 1], first,
                                       feature_paths(feat_dir, split, nshard, rank)[0])
            labels = predict(block)  # (frames of the block,)
            f.write(format_lines(names[labels], lengths[first:last]))
            bar.update(len(labels))
    mark_done(out, key, rows=len(lengths), frames=int(offsets[-1]), **provenance(model, marker))
    return out


def check_finite_block(block: np.ndarray, offsets: np.ndarray, first: int, shard: Path) -> np.ndarray:
    """``block`` (F, D) of rows ``first``… (``offsets``: their frame bounds within the shard), or LabelPrepError
    naming the shard row whose features hold NaN/Inf (the nearest centroid of a NaN frame is cluster 0)."""
    if np.isfinite(block.min()) and np.isfinite(block.max()):  # NaN propagates; no (F, D) temporary
        return block
    frame = int(np.argmax(~np.isfinite(block).all(axis=1))) + int(offsets[0])
    row = first + int(np.searchsorted(offsets, frame, side="right")) - 1
    raise LabelPrepError(f"{shard}: its row {row} holds NaN/Inf features (a shard made before NaN/Inf were "
                         f"refused); delete it and rerun the features stage, which names the file.")


def provenance(model: KMeansModel, feature_marker: dict) -> dict:
    """What a label shard (and a merged ``{split}.km``) was made with: model key, k, label rate, feature settings,
    and the fingerprint of the manifest rows the shard covers."""
    return {"model_key": model_key(model), "k": model.k, "label_rate": model.frame_rate,
            "feature_settings": feature_marker["features"], "rows_sha256": feature_marker.get("rows_sha256")}


def check_model_fits_features(model: KMeansModel, km_path, feats: np.ndarray, marker: dict, feat_dir) -> None:
    """Raise unless the features have the model's dimension and (when it records them) its feature settings."""
    if feats.shape[1] != model.dim:
        raise LabelPrepError(f"{km_path}: centroids are {model.dim}-d but {feat_dir} holds {feats.shape[1]}-d "
                             f"features; fit the model on these features (same feature settings).")
    fitted_on = json.loads(model.metadata["features"]) if "features" in model.metadata else None
    if fitted_on is not None and json_sha256(fitted_on) != json_sha256(marker["features"]):
        raise LabelPrepError(f"{km_path}: fitted on features {fitted_on} but {feat_dir} holds features "
                             f"{marker['features']}; extract the features with the model's settings or refit "
                             f"the model on these features.")


def format_lines(words: np.ndarray, lengths: np.ndarray) -> str:
    """Label strings (F,) (object array) of consecutive rows with ``lengths`` (R,) → R lines, space-separated."""
    bounds = np.cumsum(lengths)[:-1]
    return "".join(" ".join(row) + "\n" for row in np.split(words, bounds))


def merge_stage(lab_dir, split: str, nshard: int, out_dir=None) -> Path:
    """Concatenate complete shard label files into ``{out_dir or lab_dir}/{split}.km`` (atomically)."""
    shards = [label_path(lab_dir, split, nshard, rank) for rank in range(nshard)]
    markers = [read_marker(p) for p in shards]
    missing = [p for p, m in zip(shards, markers) if m is None]
    if missing:
        raise LabelPrepError(f"{missing[0]}: label shard missing or incomplete ({len(missing)} of {nshard}); run "
                             f"the apply stage for it first.")
    made_with = check_same_provenance(shards, markers)
    out = Path(out_dir or lab_dir) / f"{split}.km"
    sidecar_path(out).unlink(missing_ok=True)  # the sidecar vouches for the merged file: written only after it
    with atomic_path(out) as tmp, open(tmp, "wb") as merged:
        for shard in shards:
            with open(shard, "rb") as f:
                shutil.copyfileobj(f, merged)
    write_sidecar(out, {**made_with, "shards": nshard, **manifest_binding(markers)})
    logger.info("%s: merged %d shards", out, nshard)
    return out


PROVENANCE_KEYS = ("model_key", "k", "label_rate", "feature_settings")


def manifest_binding(markers) -> dict:
    """``{"manifest_rows": …}``: the fingerprint of the manifest rows the shards were made from, in shard order (what
    :meth:`music_ssl.data.manifest.Manifest.shards_sha256` gives for the same manifest); empty when a shard predates
    the fingerprint."""
    rows = [marker.get("rows_sha256") for marker in markers]
    return {"manifest_rows": json_sha256(rows)} if all(rows) else {}


def check_same_provenance(paths, markers) -> dict:
    """The provenance all ``markers`` (label shards or merged sidecars) share; LabelPrepError naming two that differ."""
    made_with = [{key: m.get(key) for key in PROVENANCE_KEYS} for m in markers]
    for path, other in zip(paths[1:], made_with[1:]):
        if other != made_with[0]:
            what = [key for key in PROVENANCE_KEYS if other[key] != made_with[0][key]]
            raise LabelPrepError(f"{path}: made with a different {' and '.join(what).replace('_', ' ')} than "
                                 f"{paths[0]} ({other[what[0]]} vs {made_with[0][what[0]]}); rerun the apply stage "
                                 f"for every shard with one k-means model on features of one setting.")
    return made_with[0]


def check_splits_agree(lab_dir, splits) -> None:
    """Raise unless the merged ``{split}.km`` files of ``lab_dir`` come from one model (their ``.km.json`` sidecars).

    Files without a sidecar (written by other tools) are not compared.
    """
    records = [(sidecar_path(Path(lab_dir) / f"{split}.km"), read_sidecar(Path(lab_dir) / f"{split}.km"))
               for split in splits]
    present = [(path, record) for path, record in records if record is not None]
    if present:
        check_same_provenance([path for path, _ in present], [record for _, record in present])
