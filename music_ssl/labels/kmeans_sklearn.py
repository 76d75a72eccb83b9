"""The reference backend: scikit-learn ``MiniBatchKMeans`` with fairseq's HuBERT settings.

The settings are those of fairseq's ``examples/hubert/simple_kmeans/learn_kmeans.py`` (its command-line
defaults): k-means++ init, batch 10000, n_init 20, max_iter 100, max_no_improvement 100, tol 0,
reassignment_ratio 0, init_size None, compute_labels False. Only ``verbose`` differs (0 here: fairseq prints
every mini-batch). ``backend=sklearn`` exists for parity checks; the torch backend is the fast default.
"""
import logging

import numpy as np
import torch
from sklearn.cluster import MiniBatchKMeans

from .kmeans import KMeansFit, nearest

logger = logging.getLogger(__name__)

FAIRSEQ_SETTINGS = dict(init="k-means++", max_iter=100, batch_size=10000, tol=0.0, max_no_improvement=100,
                        n_init=20, reassignment_ratio=0.0, init_size=None, compute_labels=False)


def fit_sklearn(x: np.ndarray, k: int, seed: int = 0) -> KMeansFit:
    """``MiniBatchKMeans(**FAIRSEQ_SETTINGS)`` on (N, D) float32 ``x``; inertia measured as the torch backend's."""
    model = MiniBatchKMeans(n_clusters=k, random_state=seed, verbose=0, **FAIRSEQ_SETTINGS).fit(x)
    centroids = model.cluster_centers_.astype(np.float32)  # (k, D)
    _, dists = nearest(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), torch.from_numpy(centroids))
    inertia = float(dists.double().mean())
    logger.info("sklearn MiniBatchKMeans (fairseq settings): k=%d, %d frames x %d, inertia %.5f", k, len(x),
                x.shape[1], inertia)
    return KMeansFit(centroids, inertia, 0)
