"""`python tools/make_corpus.py ARGS` = `music-ssl-make-corpus ARGS` from a checkout (the code: music_ssl/cli/make_corpus.py)."""
from music_ssl.cli.make_corpus import cli

if __name__ == "__main__":
    cli()
