"""What every music-ssl command line shares: logging from ``LOGLEVEL``, and bad input as one ``error:`` line."""
import logging
import os
import sys
from typing import Callable, Tuple, Type

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging() -> None:
    """Log to stderr at ``LOGLEVEL`` (default INFO). fairseq sets the root logger to DEBUG when it is imported, so
    the plugin (and fairseq) are imported first and the configuration is forced over theirs."""
    import music_ssl  # noqa: F401

    logging.basicConfig(level=os.environ.get("LOGLEVEL", "INFO").upper(), format=LOG_FORMAT, force=True)


def run_main(main: Callable, args: dict, errors: Tuple[Type[BaseException], ...] = ()):
    """``main(**args)`` with logging set up; a :class:`music_ssl.errors.MusicSSLError` or an error of ``errors``
    (bad input: its message names the file and the fix) is written as one ``error: …`` line on stderr and exits 1.
    Anything else keeps its traceback (a bug)."""
    setup_logging()
    from music_ssl.errors import MusicSSLError

    try:
        return main(**args)
    except (MusicSSLError, *errors) as err:
        message = str(err).strip()
        cause = str(err.__cause__ or "").strip().splitlines()  # hydra: "Error merging override k=v" <- the reason
        if not isinstance(err, MusicSSLError) and cause and cause[0] not in message:
            message = f"{message}: {cause[0]}"
        sys.stderr.write(f"error: {message}\n")
        sys.exit(1)


def emit(text: str) -> None:
    """Write a command's product (a results table, a folder for ``$(…)``) to stdout; diagnostics go to logging."""
    sys.stdout.write(str(text).rstrip("\n") + "\n")
    sys.stdout.flush()
