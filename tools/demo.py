"""`python tools/demo.py ARGS` = `music-ssl-demo ARGS` from a checkout (the code: music_ssl/cli/demo.py)."""
from music_ssl.cli.demo import cli

if __name__ == "__main__":
    cli()
