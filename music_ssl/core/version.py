"""The package version, stated once: ``setup.py`` reads it, ``music_ssl.__version__`` and cache keys use it."""
__version__ = "0.1.0"
