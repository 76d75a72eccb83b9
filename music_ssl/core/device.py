"""The one device resolver: every ``device`` argument of music-ssl (CLIs, configs, Python API) goes through it."""
from typing import Optional, Union

import torch

from .errors import DeviceError

DEVICE_HELP = "auto (CUDA when present), cpu, cuda or cuda:N (default auto)"


def resolve_device(device: Optional[Union[str, torch.device]] = "auto") -> torch.device:
    """``"auto"``/None/"" → ``cuda`` when CUDA is available, else ``cpu``; anything else parsed and checked.

    Raises :class:`DeviceError` for an unknown string or a CUDA device this machine does not have.
    """
    if isinstance(device, torch.device):
        resolved = device
    elif device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            resolved = torch.device(str(device).strip())
        except RuntimeError:
            raise DeviceError(f"device {device!r}: not a device; use {DEVICE_HELP}.") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {device!r}: CUDA is not available on this machine; use device=auto or cpu.")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise DeviceError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s); "
                              f"use cuda:0..cuda:{torch.cuda.device_count() - 1} or auto.")
    elif resolved.type not in ("cpu", "mps"):
        raise DeviceError(f"device {device!r}: unsupported device type; use {DEVICE_HELP}.")
    return resolved
