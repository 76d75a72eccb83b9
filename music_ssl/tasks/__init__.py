"""Registered fairseq tasks: music2vec and MusicHuBERT pretraining.

:func:`fields_beyond_stock` names the task settings ours add to fairseq's (what a stock-fairseq arm of a test or
benchmark must drop from our configs).
"""
from dataclasses import fields
from typing import Tuple


def fields_beyond_stock(task_name: str) -> Tuple[str, ...]:
    """The config fields of our registered task ``task_name`` that its fairseq parent task's config lacks."""
    from fairseq.tasks import TASK_DATACLASS_REGISTRY

    ours = TASK_DATACLASS_REGISTRY[task_name]
    stock = ours.__mro__[1]  # Music2VecPretrainingConfig(AudioPretrainingConfig), …(HubertPretrainingConfig)
    inherited = {f.name for f in fields(stock)}
    return tuple(f.name for f in fields(ours) if f.name not in inherited)
