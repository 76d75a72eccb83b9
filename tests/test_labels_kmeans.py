"""k-means: torch backend recovers blobs, matches the sklearn (fairseq settings) inertia, model file round trip."""
import os
import stat

import numpy as np
import pytest
import torch

from music_ssl.labels import KMeansModel, LabelPrepError, fit_torch
from music_ssl.labels.kmeans import kmeans_plusplus, lloyd, nearest
from music_ssl.labels.kmeans_sklearn import fit_sklearn


def mixture(n: int, dim: int, centres: int, spread: float, seed: int):
    """(n, dim) float32 frames around ``centres`` Gaussian centres (std 1, centres std ``spread``), and their ids."""
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((centres, dim)) * spread
    ids = rng.integers(0, centres, n)
    return (means[ids] + rng.standard_normal((n, dim))).astype(np.float32), ids


def test_well_separated_blobs_are_recovered_one_to_one():
    x, ids = mixture(2400, 16, 8, spread=20.0, seed=0)
    labels, _ = nearest(torch.from_numpy(x), torch.from_numpy(fit_torch(x, 8, seed=1, device="cpu").centroids))
    table = np.zeros((8, 8), dtype=int)  # (blob, cluster)
    np.add.at(table, (ids, labels.numpy()), 1)
    assert ((table > 0).sum(1) == 1).all() and ((table > 0).sum(0) == 1).all()


def test_torch_inertia_within_one_percent_of_sklearn_fairseq_settings():
    x, _ = mixture(6000, 39, 40, spread=2.0, seed=1)  # overlapping clusters: a real optimisation problem
    ours, reference = fit_torch(x, 24, seed=0, device="cpu"), fit_sklearn(x, 24, seed=0)
    _, dists = nearest(torch.from_numpy(x), torch.from_numpy(ours.centroids))
    assert ours.inertia == pytest.approx(float(dists.double().mean()), rel=1e-6)
    assert ours.inertia <= 1.01 * reference.inertia


def test_nearest_is_the_brute_force_argmin_in_chunks(monkeypatch):
    from music_ssl.labels import kmeans

    monkeypatch.setitem(kmeans.DISTANCE_BYTES, "cpu", 4 * 7 * 1024)  # 1024-row chunks: 3 of them for 2500 rows
    gen = torch.Generator().manual_seed(0)
    x, c = torch.randn(2500, 5, generator=gen), torch.randn(7, 5, generator=gen)
    labels, dists = nearest(x, c)
    brute = torch.cdist(x.double(), c.double()) ** 2  # (N, k)
    assert torch.equal(labels, brute.argmin(1))
    torch.testing.assert_close(dists.double(), brute.min(1).values, rtol=1e-4, atol=1e-4)


def test_kmeans_plusplus_picks_distinct_rows_one_per_blob():
    x, ids = mixture(800, 8, 5, spread=50.0, seed=2)
    centres = kmeans_plusplus(torch.from_numpy(x), 5, torch.Generator().manual_seed(0))
    rows = [int(np.flatnonzero((x == c.numpy()).all(1))[0]) for c in centres]
    assert sorted(ids[rows].tolist()) == [0, 1, 2, 3, 4]


def test_lloyd_moves_empty_clusters_onto_data():
    x, _ = mixture(600, 4, 6, spread=10.0, seed=3)
    start = torch.from_numpy(np.repeat(x[:1], 6, axis=0))  # six identical centroids: five clusters start empty
    centroids, inertia, _ = lloyd(torch.from_numpy(x), start, max_iter=50, tol=0.0)
    labels, _ = nearest(torch.from_numpy(x), centroids)
    assert torch.bincount(labels, minlength=6).min() > 0 and inertia < float(((x - x.mean(0)) ** 2).sum(1).mean())


def test_same_seed_same_result_other_seed_other_init():
    x, _ = mixture(1500, 6, 30, spread=1.0, seed=4)
    a, b, c = (fit_torch(x, 12, seed=s, device="cpu") for s in (0, 0, 1))
    np.testing.assert_array_equal(a.centroids, b.centroids)
    assert not np.array_equal(a.centroids, c.centroids)


def test_model_file_round_trip_and_bad_files(tmp_path):
    centroids = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    model = KMeansModel(centroids, {"frame_rate": "100.0", "features": '{"feature": "mfcc"}', "backend": "torch"})
    model.save(tmp_path / "km.safetensors")
    loaded = KMeansModel.load(tmp_path / "km.safetensors")
    np.testing.assert_array_equal(loaded.centroids, centroids)
    assert (loaded.k, loaded.dim, loaded.frame_rate, loaded.features) == (5, 3, 100.0, {"feature": "mfcc"})
    assert loaded.predictor("cpu")(centroids[[4, 0, 2]]).tolist() == [4, 0, 2]
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 32)
    with pytest.raises(LabelPrepError, match="junk.safetensors: not a k-means model"):
        KMeansModel.load(tmp_path / "junk.safetensors")
    with pytest.raises(LabelPrepError, match="missing.safetensors: k-means model not found"):
        KMeansModel.load(tmp_path / "missing.safetensors")


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_model_file_permissions_follow_the_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        KMeansModel(np.zeros((2, 3), np.float32), {}).save(tmp_path / "km.safetensors")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "km.safetensors").stat().st_mode) == 0o666 & ~mask


@pytest.mark.gpu
def test_cuda_fit_and_labels_agree_with_cpu():
    x, _ = mixture(20000, 39, 64, spread=2.0, seed=5)
    cpu, gpu = fit_torch(x, 32, seed=0, device="cpu"), fit_torch(x, 32, seed=0, device="cuda")
    assert gpu.inertia == pytest.approx(cpu.inertia, rel=0.01)
    model = KMeansModel(gpu.centroids, {})
    agree = (model.predictor("cuda")(x) == model.predictor("cpu")(x)).mean()
    assert agree > 0.999  # float rounding may flip exact ties only
