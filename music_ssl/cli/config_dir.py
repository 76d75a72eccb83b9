"""Print the folder of the shipped hydra configs (or, with ``--user-dir``, the plugin folder), from any folder.

    fairseq-hydra-train --config-dir "$(music-ssl-config-dir)/pretrain" --config-name music_hubert_tiny \\
        task.data=M task.label_dir=M/km common.user_dir="$(music-ssl-config-dir --user-dir)"
"""
import argparse

from ..core.resources import CONFIG_DIR, PLUGIN_DIR
from .common import emit


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--user-dir", dest="user_dir", action="store_true",
                        help="print the plugin folder for fairseq's common.user_dir instead")
    args = parser.parse_args()
    emit(PLUGIN_DIR if args.user_dir else CONFIG_DIR)


if __name__ == "__main__":
    cli()
