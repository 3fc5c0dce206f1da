"""Linear layers that, for CPU bf16 inference, multiply by a copy of their weight pre-packed for oneDNN.

``F.linear`` in bf16 on CPU hands oneDNN a plain row-major weight, which oneDNN reorders into its blocked layout on
every call; for CLIP-L's MLP (5770 x 1024 x 4096 per image) that reorder costs 10-20 % of the GEMM. Packing the weight
once (``torch.ops.mkldnn._reorder_linear_weight``) and calling oneDNN's linear on it
(``torch.ops.mkldnn._linear_pointwise``, the kernels ``torch.compile`` uses for frozen CPU graphs) gives the same
bits: the arithmetic is the same, only the weight's memory order differs (tested on every shape the tower uses).

The packed copy is used only where it cannot go stale or change the numbers: CPU, bf16 input and weight, no
gradients being recorded, no autocast. Elsewhere (training, GPU, fp32, fp16) the layer is ``nn.Linear``. The copy
is rebuilt when the weight changes (its storage or version counter), dropped when the module is moved, copied or
pickled, and costs one extra copy of the weights while it exists (CLIP-L + DEM + projector: about 0.7 GB in bf16).
``INF_LLAVA_PACKED_WEIGHTS=0`` in the environment turns the packed path off (plain ``F.linear`` everywhere).
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn


def available() -> bool:
    """Whether this torch build has the oneDNN linear ops."""
    return torch.backends.mkldnn.is_available() and all(
        hasattr(torch.ops.mkldnn, op) for op in ("_reorder_linear_weight", "_linear_pointwise")
    )


class PackedLinear(nn.Linear):
    """``nn.Linear`` (same parameters, names and outputs) with the pre-packed CPU bf16 inference path."""

    _packed: tuple[tuple, torch.Tensor] | None = None  # (weight key, packed weight)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if self._use_packed(input):
            return torch.ops.mkldnn._linear_pointwise(input, self._packed_weight(input), self.bias, "none", [], "")
        return F.linear(input, self.weight, self.bias)

    def _use_packed(self, input: torch.Tensor) -> bool:
        weight, bias = self.weight, self.bias
        return (
            _PACKING
            and input.dtype == weight.dtype == torch.bfloat16
            and (bias is None or bias.dtype == torch.bfloat16)
            and input.device.type == weight.device.type == "cpu"
            and not torch.is_grad_enabled()
            and not torch.is_autocast_enabled("cpu")
            and not torch.compiler.is_compiling()  # compiled graphs pack (and fuse) weights themselves
            and input.dim() >= 2
            and input.numel() > 0
            and input.is_contiguous()
            and type(input) is torch.Tensor
            and type(weight) in (torch.Tensor, nn.Parameter)
        )

    def _packed_weight(self, input: torch.Tensor) -> torch.Tensor:
        key = _weight_key(self.weight)
        cached = self._packed  # read once: another thread may replace it meanwhile
        if cached is not None and cached[0] == key:
            return cached[1]
        rows = input.numel() // input.shape[-1]  # oneDNN picks the blocked layout for this many rows
        packed = torch.ops.mkldnn._reorder_linear_weight(self.weight.detach(), rows)
        self._packed = (key, packed)
        return packed

    def clear_packed(self) -> None:
        """Drop the packed copy (it is rebuilt on the next call that uses it)."""
        self._packed = None

    def _apply(self, fn, recurse=True):
        self._packed = None  # moved or converted: the copy no longer matches
        return super()._apply(fn, recurse)

    def __getstate__(self):  # copies and pickles leave the packed weight behind
        return {name: value for name, value in self.__dict__.items() if name != "_packed"}


def _weight_key(weight: torch.Tensor) -> tuple:
    try:
        version = weight._version
    except RuntimeError:  # an inference tensor: it cannot be modified in place outside inference mode
        version = -1
    return (weight.data_ptr(), version, tuple(weight.shape))


_PACKING = available() and os.environ.get("INF_LLAVA_PACKED_WEIGHTS", "1") != "0"


def use_packed_linears(module: nn.Module) -> nn.Module:
    """Turn every plain ``nn.Linear`` inside ``module`` into a :class:`PackedLinear`, in place (the class changes,
    parameters, names and hooks stay). A no-op where torch lacks the oneDNN ops."""
    for child in module.modules():
        if type(child) is nn.Linear:
            child.__class__ = PackedLinear
    return module


def restore_linears(module: nn.Module) -> nn.Module:
    """Undo :func:`use_packed_linears`: plain ``nn.Linear`` again, packed copies freed."""
    for child in module.modules():
        if type(child) is PackedLinear:
            child.clear_packed()
            child.__class__ = nn.Linear
    return module
