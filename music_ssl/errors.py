"""The public name of music-ssl's error tree (it lives on the ground floor, :mod:`music_ssl.core.errors`)."""
from .core.errors import (CheckpointError, ConfigError, DataError, DemoError, DeviceError, ExportError, LabelError,  # noqa: F401
                          MusicSSLError, ProbeError, one_line)
