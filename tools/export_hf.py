"""`python tools/export_hf.py ARGS` = `music-ssl-export-hf ARGS` from a checkout (the code: music_ssl/cli/export_hf.py)."""
from music_ssl.cli.export_hf import cli

if __name__ == "__main__":
    cli()
