"""Probing suite: how good is a representation on the MIR tasks of the papers?

Pipeline (each step one module):

``config``      the run config schema (hydra structured config ``probe_schema``)
``features``    checkpoint / HF / Jukebox / CHROMA / MFCC features, cached on disk under a content key
``tasks``       registry of tasks reading each dataset's official layout, plus a generic CSV task
``assemble``    features + labels -> arrays per split on the device (``data.ProbeData``)
``protocols``   probe configs and the ma2023 / mulap / marble / jukemir presets with their task rules
``published``   the papers' result tables (package data) for the report's "paper" column
``probes``      stacked linear / MLP probes and Adam; ``trainer`` trains a whole grid as one computation;
                ``randomness``: per-probe random numbers, so a probe trains the same alone or in a stack
``metrics``     sklearn / mir_eval metrics and batched torch twins; ``beat``: madmom DBN decoding
``runner``      a config end to end; ``report``: selection, mean ± 95% CI, Markdown/CSV/JSON, layer plot

Command line: ``music-ssl-probe --config-name <name> [key=value ...]``
(``music-ssl-probe``).
"""
from .errors import MissingDataError, ProbeConfigError, ProbeDataError, ProbeError
from .runner import run_probe

__all__ = ["run_probe", "ProbeError", "ProbeConfigError", "ProbeDataError", "MissingDataError"]
