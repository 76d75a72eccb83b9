"""The public name of music-ssl's error tree (it lives on the ground floor, :mod:`music_ssl.core.errors`)."""
from .core.errors import (CheckpointError, ConfigError, DataError, DemoError, DeviceError, DiskError,  # noqa: F401
                          ExportError, LabelError, MusicSSLError, ProbeError, one_line)
