"""The console scripts: argparse, one call into the library, and bad input as one ``error:`` line (``common``).

``tools/*.py`` in a checkout are one-line shims over these modules; the ``tools`` folder is not installed.
"""
