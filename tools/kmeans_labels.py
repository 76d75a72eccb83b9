"""`python tools/kmeans_labels.py ARGS` = `music-ssl-kmeans ARGS` from a checkout (the code: music_ssl/cli/kmeans_labels.py)."""
from music_ssl.cli.kmeans_labels import cli

if __name__ == "__main__":
    cli()
