"""`python tools/probe.py ARGS` = `music-ssl-probe ARGS` from a checkout (the code: music_ssl/cli/probe.py)."""
from music_ssl.cli.probe import cli

if __name__ == "__main__":
    cli()
