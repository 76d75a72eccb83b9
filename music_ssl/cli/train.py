"""Pretrain: ``fairseq-hydra-train`` with the shipped pretrain configs and ``common.user_dir`` filled in.

    music-ssl-train --config-name music2vec_base task.data=/data/music/manifests
    music-ssl-train -m --config-name music2vec_base task.data=M +run=slurm_2 hydra.launcher.partition=PART
    torchrun --nproc_per_node=8 -m music_ssl.cli.train --config-name music2vec_base task.data=M +run=torchrun

Every argument is fairseq-hydra-train's (hydra's options, ``-m``, config overrides); ``--config-dir`` defaults to
``$(music-ssl-config-dir)/pretrain`` and ``common.user_dir`` to this plugin unless given. An expected error (bad
data or labels, a label rate or setting that cannot work, an unreadable checkpoint) ends the run with one
``error: …`` line and exit status 1, in every process (``music_ssl/run_errors.py``); a bug keeps its traceback.
"""
import sys

from ..core.resources import PLUGIN_DIR, PRETRAIN_CONFIG_DIR
from .common import run_main

CONFIG_DIR_FLAGS = ("--config-dir", "-cd")


def train_arguments(argv: list) -> list:
    """fairseq-hydra-train's arguments for ``music-ssl-train ARGV``: the shipped pretrain configs unless
    ``--config-dir`` / ``-cd`` is given, ``common.user_dir=<this plugin>`` unless an override sets it."""
    args = list(argv)
    if not any(a in CONFIG_DIR_FLAGS or a.startswith(tuple(f"{f}=" for f in CONFIG_DIR_FLAGS)) for a in args):
        args = ["--config-dir", str(PRETRAIN_CONFIG_DIR), *args]
    if not any(a.lstrip("+~").startswith("common.user_dir=") for a in args):
        args.append(f"common.user_dir={PLUGIN_DIR}")
    return args


def main(argv: list) -> None:
    from fairseq_cli.hydra_train import cli_main

    sys.argv = ["music-ssl-train", *train_arguments(argv)]
    cli_main()


USAGE = "usage: music-ssl-train [--config-name NAME] [-m] [fairseq-hydra-train's options] [overrides ...]\n\n"


def cli() -> None:
    if {"-h", "--help"} & set(sys.argv[1:]):  # then hydra's help: the options and the composed config
        sys.stdout.write(USAGE + __doc__ + "\nfairseq-hydra-train's help:\n\n")
        sys.stdout.flush()
    run_main(main, {"argv": sys.argv[1:]})


if __name__ == "__main__":
    cli()
