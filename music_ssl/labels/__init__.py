"""Label preparation for MusicHuBERT: frame features → k-means → ``{split}.km`` + ``dict.km.txt``, with checks.

Stages (each a function here, each a subcommand of ``music-ssl-kmeans``, sharded like fairseq's
``examples/hubert/simple_kmeans``):

* features — :mod:`.features` with :mod:`.mfcc` (iteration 1, 100 Hz) or :mod:`.layer` (iteration 2, 50 Hz)
* fit — :mod:`.fit`: a frame sample (:mod:`.sampling`) → :mod:`.kmeans` (torch) or :mod:`.kmeans_sklearn`
  (fairseq's MiniBatchKMeans), saved by :mod:`.kmeans_file` (safetensors)
* apply / merge — :mod:`.apply`
* check — :mod:`.check`: alignment with the manifest and a cluster-quality report
* all — :mod:`.pipeline`

Their settings — defaults, help and value checks, stated once — are :mod:`.settings` (``LabelSettings`` with
``FeatureSettings``, ``FitSettings``, ``CheckSettings``).
"""
from .apply import apply_stage, merge_stage, write_dictionary
from .check import ClusterReport, check_stage
from .errors import LabelPrepError
from .features import dump_features, make_extractor
from .fit import fit_stage
from .kmeans import KMeansFit, fit_torch
from .kmeans_file import KMeansModel
from .pipeline import run_all
from .settings import CheckSettings, FeatureSettings, FitSettings, LabelSettings

__all__ = ["apply_stage", "merge_stage", "write_dictionary", "ClusterReport", "check_stage", "LabelPrepError",
           "dump_features", "make_extractor", "fit_stage", "KMeansFit", "fit_torch", "KMeansModel", "run_all",
           "LabelSettings", "FeatureSettings", "FitSettings", "CheckSettings"]
