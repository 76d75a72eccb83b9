"""`python tools/train.py ARGS` = `music-ssl-train ARGS` from a checkout (the code: music_ssl/cli/train.py)."""
from music_ssl.cli.train import cli

if __name__ == "__main__":
    cli()
