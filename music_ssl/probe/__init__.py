"""Probing suite: how good is a representation on the MIR tasks of the papers?

Pipeline (each step one module):

``features``    checkpoint / HF / Jukebox / CHROMA / MFCC features, cached on disk under a content key
``tasks``       registry of tasks reading each dataset's official layout, plus a generic CSV task
``assemble``    features + labels -> arrays per split on the device (``data.ProbeData``)
``protocols``   probe configs and the jukemir / marble / mulap presets
``probes``      stacked linear / MLP probes and Adam; ``trainer`` trains a whole grid as one computation
``metrics``     sklearn / mir_eval metrics and batched torch twins; ``beat``: madmom DBN decoding
``runner``      a config end to end; ``report``: selection, mean ± 95% CI, Markdown/CSV/JSON, layer plot

Command line: ``python tools/probe.py --config-dir config/probe --config-name <name> [key=value ...]``.
"""
from .errors import MissingDataError, ProbeConfigError, ProbeDataError, ProbeError
from .runner import run_probe

__all__ = ["run_probe", "ProbeError", "ProbeConfigError", "ProbeDataError", "MissingDataError"]
