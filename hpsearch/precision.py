"""The arithmetic a trial trains in: fp32, or bf16 autocast where the device computes bf16
natively.

Only the forward passes run under ``torch.autocast`` (convolutions and matrix products in
bf16, reductions and losses in fp32, as autocast's op lists decide); weights, optimizer
state, gradients and checkpoints stay fp32. "Native" means the hardware has bf16 arithmetic:
a CUDA GPU that supports it without emulation, or a CPU with AVX512-BF16 or AMX-BF16. A CPU
without them would run bf16 through conversions, slower than fp32, so ``auto`` keeps fp32 there.
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

CHOICES = ("auto", "fp32", "bf16")
# CPU flags (Linux's /proc/cpuinfo) of the instructions oneDNN runs bf16 convolutions and
# matrix products on.
NATIVE_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.cache
def _cpu_flags() -> frozenset[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: no way to tell, so no native bf16
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def native_bf16(device) -> bool:
    """Whether ``device`` (a torch.device) computes bf16 natively."""
    import torch

    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        return torch.backends.mkldnn.is_available() and bool(_cpu_flags() & set(NATIVE_BF16_CPU_FLAGS))
    return False


def resolve(choice: str, device, allow_bf16: bool = True) -> str:
    """``fp32`` or ``bf16`` for the ``--precision`` ``choice`` on ``device``. ``auto`` is bf16
    where the device has it natively and the study allows it (``allow_bf16``), else fp32;
    an explicit choice is taken as it is."""
    if choice not in CHOICES:
        raise ValueError(f"unknown precision {choice!r}: use {', '.join(CHOICES)}")
    if choice != "auto":
        return choice
    return "bf16" if allow_bf16 and native_bf16(device) else "fp32"


def autocast(precision: str, device):
    """The context the forward passes run in: bf16 autocast, or nothing for fp32."""
    import torch

    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
