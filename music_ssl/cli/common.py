"""What every music-ssl command line shares: logging from ``LOGLEVEL``, and bad input as one ``error:`` line."""
import logging
import os
import sys
from typing import Callable, Tuple, Type

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
OMEGACONF_CONTEXT = ("full_key:", "object_type=", "reference_type=")  # lines OmegaConf appends to its messages


class StderrHandler(logging.StreamHandler):
    """A stream handler writing to ``sys.stderr`` as it is at each record, not as it was when the handler was made
    (a command run in-process, e.g. by a test, must not keep writing to a stream that was replaced and closed)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value):
        pass


def setup_logging() -> None:
    """Log to stderr at ``LOGLEVEL`` (default INFO). fairseq sets the root logger to DEBUG when it is imported, so
    the plugin (and fairseq) are imported first and the configuration is forced over theirs."""
    import music_ssl  # noqa: F401

    logging.basicConfig(level=os.environ.get("LOGLEVEL", "INFO").upper(), format=LOG_FORMAT, force=True,
                        handlers=[StderrHandler()])


def run_main(main: Callable, args: dict, errors: Tuple[Type[BaseException], ...] = ()):
    """``main(**args)`` with logging set up; a :class:`music_ssl.errors.MusicSSLError` or an error of ``errors``
    (bad input: its message names the file and the fix) is written as one ``error: …`` line on stderr and exits 1.
    Anything else keeps its traceback (a bug)."""
    setup_logging()
    from music_ssl.core.errors import MusicSSLError, exit_with_error_line

    try:
        return main(**args)
    except (MusicSSLError, *errors) as err:
        message = str(err).strip()
        cause = str(err.__cause__ or "").strip().splitlines()  # hydra: "Error merging override k=v" <- the reason
        if not isinstance(err, MusicSSLError):
            if cause and cause[0] not in message:
                message = f"{message}: {cause[0]}"
            message = single_line(message)
        exit_with_error_line(message)


def single_line(text: str) -> str:
    """A third-party message on one line: OmegaConf's context lines dropped (``full_key: k`` kept as ``(key k)``
    where the message does not name the key), the other lines joined with spaces. E.g. a YAML value outside its
    choices: ``In 'x': ValidationError raised while composing config: Invalid value 'map', expected one of
    [ma2023, …] (key protocol.name)``."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    key = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("full_key:")), "")
    joined = " ".join(line for line in lines if not line.startswith(OMEGACONF_CONTEXT))
    return f"{joined} (key {key})" if key and key not in joined else joined


def emit(text: str) -> None:
    """Write a command's product (a results table, a folder for ``$(…)``) to stdout; diagnostics go to logging."""
    sys.stdout.write(str(text).rstrip("\n") + "\n")
    sys.stdout.flush()
