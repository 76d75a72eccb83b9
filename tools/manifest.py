"""`python tools/manifest.py ARGS` = `music-ssl-manifest ARGS` from a checkout (the code: music_ssl/cli/manifest.py)."""
from music_ssl.cli.manifest import cli

if __name__ == "__main__":
    cli()
