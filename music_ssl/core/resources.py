"""Where the installed package keeps what it ships: the plugin folder and the hydra configs.

The YAMLs live in ``music_ssl/config/`` (package data, so a wheel carries them); a checkout also has the
top-level ``config`` link to that folder. ``music-ssl-config-dir`` prints :data:`CONFIG_DIR`.
"""
from pathlib import Path

PLUGIN_DIR = Path(__file__).resolve().parent.parent  # what fairseq's ``common.user_dir`` takes
CONFIG_DIR = PLUGIN_DIR / "config"  # pretrain/ (fairseq-hydra-train) and probe/ (music-ssl-probe)
PRETRAIN_CONFIG_DIR = CONFIG_DIR / "pretrain"
PROBE_CONFIG_DIR = CONFIG_DIR / "probe"
