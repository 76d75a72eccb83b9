"""bf16 autocast with fp32 master weights for our pretraining tasks (``task.bf16_autocast=true``).

fairseq offers fp16 (whole-model cast + loss scaling), ``common.amp`` (fp16 autocast) and ``common.bf16``
(whole-model cast to bf16, which ran 1.87x slower than fp16 on an H100 for stock HuBERT). This runs the
forward and backward passes under ``torch.autocast(dtype=bfloat16)`` while parameters, gradients and
optimizer state stay fp32: bf16's range needs no loss scaling. Default off until measured faster.
"""
import contextlib

import torch

BF16_AUTOCAST_HELP = ("run forward/backward under torch.autocast(bfloat16) with fp32 weights and optimizer "
                      "(use with common.fp16=false and common.bf16=false)")


class Bf16AutocastMixin:
    """Wraps a fairseq task's ``train_step`` / ``valid_step`` in bf16 autocast when ``cfg.bf16_autocast``."""

    def autocast(self, sample) -> contextlib.AbstractContextManager:
        if not getattr(self.cfg, "bf16_autocast", False) or not sample:
            return contextlib.nullcontext()
        device = sample["net_input"]["source"].device.type
        return torch.autocast(device_type=device, dtype=torch.bfloat16)

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False):
        with self.autocast(sample):
            return super().train_step(sample, model, criterion, optimizer, update_num, ignore_grad)

    def valid_step(self, sample, model, criterion):
        with self.autocast(sample):
            return super().valid_step(sample, model, criterion)
