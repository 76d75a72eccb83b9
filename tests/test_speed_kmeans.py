"""CPU k-means apply: blocked ‖c‖² − 2x·c labels equal the exact nearest centroid and sklearn's predict."""
import numpy as np
import torch
from sklearn.cluster import KMeans

from music_ssl.labels.kmeans import chunk_rows, nearest
from music_ssl.labels.kmeans_file import KMeansModel

torch.set_num_threads(1)


def frames_and_centroids(n=5000, dim=39, k=500, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, dim)).astype(np.float32) * 3
    x = (centres[rng.integers(0, k, n)] + rng.standard_normal((n, dim)).astype(np.float32))
    return x, x[rng.choice(n, k, replace=False)].copy()


def test_apply_labels_are_the_exact_nearest_centroid_across_block_boundaries():
    x, c = frames_and_centroids()
    assert chunk_rows(len(c), torch.device("cpu")) < len(x), "several distance blocks are exercised"
    labels, dists = nearest(torch.from_numpy(x), torch.from_numpy(c))
    exact = ((x[:, None, :].astype(np.float64) - c[None].astype(np.float64)) ** 2).sum(-1)  # (N, k)
    best = exact.min(1)
    chosen = exact[np.arange(len(x)), labels.numpy()]
    assert np.all(chosen <= best + 1e-3 * (1 + best)), "any label differs only by a float32 tie"
    assert (labels.numpy() == exact.argmin(1)).mean() > 0.999
    np.testing.assert_allclose(dists.numpy(), best, rtol=1e-3, atol=1e-2)


def test_predictor_labels_equal_sklearn_predict():
    x, c = frames_and_centroids(seed=1)
    reference = KMeans(n_clusters=len(c), init=c, n_init=1, max_iter=1).fit(c)  # its centres are c (sklearn
    np.testing.assert_allclose(reference.cluster_centers_, c, atol=1e-5)  # centres the data: float rounding)
    ours = KMeansModel(c, {}).predictor("cpu")(x)
    assert (ours == reference.predict(x)).mean() > 0.999
