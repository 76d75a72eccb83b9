"""The one parser of fairseq's conv-stack spec (``conv_feature_layers``) and the geometry that follows from it.

The spec is fairseq's own format, a Python list expression of ``(dim, kernel, stride)`` tuples such as
``"[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2"`` (wav2vec 2.0 / HuBERT / data2vec / music2vec:
receptive field 400 samples, stride 320 = 50 Hz at 16 kHz). It is evaluated with no builtins and no names, so a
config cannot run code through it.
"""
import ast
from typing import List, Tuple

import torch

from .errors import ConfigError

ConvLayer = Tuple[int, int, int]  # (channels, kernel, stride)
ALLOWED_NODES = (ast.Expression, ast.List, ast.Tuple, ast.Constant, ast.BinOp, ast.Add, ast.Mult, ast.Load)


def conv_layers(spec: str) -> List[ConvLayer]:
    """``"[(512,10,5)] + [(512,3,2)] * 4"`` → ``[(512, 10, 5), (512, 3, 2), …]``; ConfigError for anything else."""
    tree = ast.parse(str(spec), mode="eval")
    if not all(isinstance(node, ALLOWED_NODES) for node in ast.walk(tree)):
        raise ConfigError(f"conv_feature_layers {spec!r}: not a list expression of (dim, kernel, stride) tuples")
    layers = eval(compile(tree, "<conv_feature_layers>", "eval"), {"__builtins__": {}}, {})
    try:
        return [(int(dim), int(kernel), int(stride)) for dim, kernel, stride in layers]
    except (TypeError, ValueError):
        raise ConfigError(f"conv_feature_layers {spec!r}: not a list of (dim, kernel, stride) tuples") from None


def conv_geometry(spec: str) -> Tuple[int, int]:
    """(receptive field, stride) in samples of the conv stack ``spec`` (400, 320 for the standard stack)."""
    field, stride = 1, 1
    for _dim, kernel, step in conv_layers(spec):
        field += (kernel - 1) * stride
        stride *= step
    return field, stride


def conv_frames(num_samples: torch.Tensor, spec: str) -> torch.Tensor:
    """Frames the conv stack ``spec`` gives for ``num_samples`` (int tensor, any shape), as fairseq computes them."""
    frames = num_samples.clone()
    for _dim, kernel, step in conv_layers(spec):
        frames = torch.div(frames - kernel, step, rounding_mode="floor") + 1
    return frames.clamp(min=0)
