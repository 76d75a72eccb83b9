"""Export a fairseq checkpoint (music2vec, MusicHuBERT, stock hubert / data2vec_audio) to a transformers folder.

    music-ssl-export-hf CHECKPOINT OUT_DIR [--check] [--overwrite]
    python -m tools.export_hf checkpoints/checkpoint_best.pt exported/music2vec --check

Writes config.json, model.safetensors, preprocessor_config.json and export_info.json into OUT_DIR (atomically).
Load the result with ``transformers.AutoModel.from_pretrained(OUT_DIR)`` (no trust_remote_code).
``--check`` reloads the folder and compares every hidden state with the fairseq model on random audio
(unpadded and padded); a failed check exits 1 and writes nothing. Logging level from LOGLEVEL (default INFO).
"""
import argparse
import json
import logging
import os
import sys


def main(checkpoint: str, out_dir: str, check: bool = False, overwrite: bool = False) -> dict:
    from music_ssl.export.hf import export_checkpoint

    info = export_checkpoint(checkpoint, out_dir, overwrite=overwrite, check=check)
    print(json.dumps({k: v for k, v in info.items() if k != "dropped_pretraining_only_keys"}, indent=2))
    return info


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="fairseq checkpoint (.pt) written by fairseq-hydra-train")
    parser.add_argument("out_dir", help="folder to write (must be new or empty unless --overwrite)")
    parser.add_argument("--check", action="store_true", help="verify hidden-state parity on random audio")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing non-empty OUT_DIR")
    args = parser.parse_args()
    logging.basicConfig(level=os.environ.get("LOGLEVEL", "INFO").upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        main(**vars(args))
    except (ValueError, FileNotFoundError) as err:  # ExportError, CheckpointError: one line naming file and fix
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    except ImportError as err:
        print(f"error: {err}; install the transformers extra: pip install '.[hf]'", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    cli()
