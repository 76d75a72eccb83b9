"""Export a fairseq checkpoint (music2vec, MusicHuBERT, music2vec2, stock hubert / data2vec_audio) to transformers.

    music-ssl-export-hf CHECKPOINT OUT_DIR [--check] [--overwrite]
    music-ssl-export-hf checkpoints/checkpoint_best.pt exported/music2vec --check

Writes config.json, model.safetensors, preprocessor_config.json and export_info.json into OUT_DIR: staged in a
hidden folder beside it, then each moved in by one rename (export_info.json last: its presence marks a complete
export). Other files in OUT_DIR are never touched; --overwrite replaces only these files. Permissions follow the
umask.
Load the result with ``transformers.AutoModel.from_pretrained(OUT_DIR)`` (no trust_remote_code).
A music2vec2 (data2vec 2.0) checkpoint has no transformers class: its folder also gets configuration_music2vec2.py
and modeling_music2vec2.py (music-ssl's own, torch + transformers only) named by config.json's auto_map; load it
with ``AutoModel.from_pretrained(OUT_DIR, trust_remote_code=True)`` (probe: source.trust_remote_code=true).
``--check`` reloads the folder and compares every hidden state with the fairseq model on random audio
(unpadded and padded); a failed check exits 1 and writes nothing. Bad input exits 1 with one line on stderr
naming the file and the fix. Logging level from LOGLEVEL (default INFO).
"""
import argparse
import logging

from ..core.errors import ExportError
from .common import run_main

logger = logging.getLogger("music_ssl.cli.export_hf")


def main(checkpoint: str, out_dir: str, check: bool = False, overwrite: bool = False) -> dict:
    """Export ``checkpoint`` into ``out_dir``; returns the export info (what export_info.json holds)."""
    try:
        import transformers  # noqa: F401  (the optional extra)
    except ModuleNotFoundError:
        raise ExportError("transformers is not installed; install the extra from the music-ssl checkout: "
                          "pip install -e '.[hf]'") from None
    from music_ssl.export.hf import export_checkpoint

    info = export_checkpoint(checkpoint, out_dir, overwrite=overwrite, check=check)
    parity = info.get("parity")
    logger.info("%s -> %s: %s from %s, %d Hz, do_normalize=%s%s", checkpoint, out_dir, info["transformers_class"],
                info["fairseq_model"], info["sample_rate"], info["do_normalize"],
                f", parity max |diff| {max(parity['unpadded_max_abs_diff'], parity['padded_max_abs_diff']):.2e}"
                if parity else "")
    return info


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="fairseq checkpoint (.pt) written by fairseq-hydra-train")
    parser.add_argument("out_dir", help="folder to write (may hold other files; the export's own only with "
                                        "--overwrite)")
    parser.add_argument("--check", action="store_true", help="verify hidden-state parity on random audio")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the files this export writes (config.json, model.safetensors, "
                             "preprocessor_config.json, export_info.json; for music2vec2 also "
                             "configuration_music2vec2.py, modeling_music2vec2.py) in OUT_DIR; other files there "
                             "are kept")
    run_main(main, vars(parser.parse_args()), (FileNotFoundError,))


if __name__ == "__main__":
    cli()
