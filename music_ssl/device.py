"""The public name of music-ssl's one device resolver (it lives on the ground floor, :mod:`music_ssl.core.device`)."""
from .core.device import DEVICE_HELP, resolve_device  # noqa: F401
