"""`python tools/config_dir.py ARGS` = `music-ssl-config-dir ARGS` from a checkout (the code: music_ssl/cli/config_dir.py)."""
from music_ssl.cli.config_dir import cli

if __name__ == "__main__":
    cli()
