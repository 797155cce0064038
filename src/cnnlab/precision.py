"""Mixed precision by name: fp32 (none), bf16 or fp16 autocast (Micikevicius et al. 2018,
"Mixed Precision Training", ICLR), for `cnnlab train` and `cnnlab bench` alike.

Under autocast the convolutions and matrix products run in the lower precision while the
weights, the optimiser and the reductions stay in fp32; fp16's narrow range also needs the
loss scaled (`grad_scaler`), bf16's does not.
"""

from __future__ import annotations

import contextlib
import warnings

import torch

from cnnlab.errors import CnnlabError

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of `precision` (None for fp32); an error where `device` lacks it."""
    if precision not in PRECISIONS:
        raise CnnlabError(f"--precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    dtype = PRECISIONS[precision]
    if dtype is None:
        return None
    if device.type == "cuda" and dtype is torch.bfloat16 and not torch.cuda.is_bf16_supported():
        raise CnnlabError(f"--precision bf16: this GPU ({device}) does not support bfloat16")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with torch.autocast(device.type, dtype=dtype):
            pass
    if caught:
        reason = str(caught[0].message).splitlines()[0]
        raise CnnlabError(f"--precision {precision} is not supported on {device.type}: {reason}")
    return dtype


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """torch.autocast on `device` in `dtype`, or nothing for fp32 (dtype None)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """A loss scaler, enabled for fp16 only (a pass-through otherwise)."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")
