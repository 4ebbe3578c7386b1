"""A torch function mode that catches random draws whose generator lives on another device than the
result, the error CUDA raises ("Expected a 'cuda' device type for generator") and a CPU run never does.

Run the code under test with ``device="meta"`` tensors (or a meta ``device`` argument) and a CPU generator:
a draw made on the meta device with that generator is the same mistake as a CPU generator on CUDA.
"""

from __future__ import annotations

import torch
from torch.overrides import TorchFunctionMode


class GeneratorDeviceMismatch(AssertionError):
    """A draw used a generator of another device type than its output."""


class GeneratorDeviceGuard(TorchFunctionMode):
    """Raises :class:`GeneratorDeviceMismatch` on a call with ``generator=g`` whose target device (the
    ``device`` argument, else the first tensor argument's) has another type than ``g.device``."""

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        kwargs = kwargs or {}
        generator = kwargs.get("generator")
        if isinstance(generator, torch.Generator):
            target = kwargs.get("device")
            if target is None:
                target = next((a.device for a in args if isinstance(a, torch.Tensor)), torch.device("cpu"))
            if torch.device(target).type != generator.device.type:
                raise GeneratorDeviceMismatch(
                    f"{getattr(func, '__name__', func)}: generator on {generator.device}, output on {target}"
                )
        return func(*args, **kwargs)
