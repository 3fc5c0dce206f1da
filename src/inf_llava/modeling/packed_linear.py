"""Linear layers that, for CPU bf16 inference, multiply by a copy of their weight pre-packed for oneDNN, where
that is verified to give ``nn.Linear``'s bits on this CPU.

``F.linear`` in bf16 on CPU hands oneDNN a plain row-major weight, which oneDNN reorders into its blocked layout on
every call; for CLIP-L's MLP (5770 x 1024 x 4096 per image) that reorder costs 10-20 % of the GEMM. Packing the weight
once (``torch.ops.mkldnn._reorder_linear_weight``) and calling oneDNN's linear on it
(``torch.ops.mkldnn._linear_pointwise``, the kernels ``torch.compile`` uses for frozen CPU graphs) saves that.

Whether the two give the same bits depends on the CPU and the shape, because oneDNN picks its kernels (and with
them the order in which each output's fp32 sum is accumulated) per instruction set and problem size: on the
AVX512-BF16 AMD EPYC of docs/performance.md the released model's GEMM shapes agree on millions of outputs, while
some small ones (64 inputs, 1 row) differ in about 1e-4 of their outputs; on Intel CPUs with AMX a CLIP-L
1024 -> 1024 projection differs; on CPUs without AVX512 this torch build has no packed bf16 kernel at all. So the
packed path is never assumed exact, it is checked (:class:`Exactness`): the first time a weight shape meets a row
count, the layer computes both products on that input (plus random inputs of the same shape until
:data:`VERIFY_ELEMENTS` outputs have been compared) and returns ``F.linear``'s; only if every bit agreed does that
(shape, rows) pair use the packed weight from then on. A shape that ever disagrees, or a CPU whose kernel refuses,
uses ``F.linear`` for good (logged once). So a :class:`PackedLinear` returns what ``nn.Linear`` returns on any CPU,
up to what a check on 2^17 outputs cannot see (a kernel differing in fewer than about 1e-5 of its outputs);
what differs between CPUs is how often the faster path is taken (``INFO`` logs and :func:`exactness_report` say).

Whatever the CPU, the packed kernel's result stays within fp32 accumulation error of ``F.linear``'s before the one
rounding to bf16: ``|packed - plain| <= ulp_bf16(|plain|) + 2 K u32 (|x| @ |W|^T + |b|)`` elementwise (``u32`` the
fp32 unit roundoff), which ``tests/modeling/test_packed_linear.py`` checks on every CPU it runs on.

The packed copy is used only where it cannot go stale: CPU, bf16 input and weight, no gradients being recorded, no
autocast. Elsewhere (training, GPU, fp32, fp16) the layer is ``nn.Linear``. The copy is rebuilt when the weight
changes (its storage or version counter), dropped when the module is moved, copied or pickled, and costs one extra
copy of the weights while it exists (CLIP-L + DEM + projector: about 0.7 GB in bf16).
``INF_LLAVA_PACKED_WEIGHTS=0`` in the environment turns the packed path off (plain ``F.linear`` everywhere).
"""

from __future__ import annotations

import logging
import os
import threading

import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)

# A verification compares at least this many output elements (extra random inputs of the same shape make up for a
# small product). Kernels that accumulate in another order differ in roughly 1e-4 of bf16 outputs or more, so
# 2^17 compared elements miss such a kernel with probability below e^-10.
VERIFY_ELEMENTS = 1 << 17
MAX_PROBES = 256  # extra random inputs per verification, at most
# Row counts remembered per weight shape; beyond it a new row count is verified again instead of being remembered.
MAX_REMEMBERED_ROWS = 1024
# A language model's linears (``pack_lm_weights``) take the packed path for products of at most this many rows: its
# decoding steps, where the per-call weight reorder costs the most; long prefills gain little and would each pay a
# verification for their new row count.
LM_MAX_ROWS = 64


def available() -> bool:
    """Whether this torch build has the oneDNN linear ops (whether this CPU runs them exactly is checked later)."""
    return torch.backends.mkldnn.is_available() and all(
        hasattr(torch.ops.mkldnn, op) for op in ("_reorder_linear_weight", "_linear_pointwise")
    )


class Exactness:
    """What verification has found on this CPU, per GEMM shape ``(in_features, out_features, has_bias)``: the row
    counts at which the packed kernel gave ``F.linear``'s bits, or that it did not (then the shape is off for good).
    Process-wide and thread-safe: layers of the same shape share one record."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._exact: dict[tuple, set[int]] = {}
        self._inexact: dict[tuple, str] = {}  # shape -> why
        self._unsupported: str | None = None  # this CPU's oneDNN refuses the packed bf16 kernel

    def verdict(self, shape: tuple, rows: int) -> bool | None:
        """True (verified exact), False (not to be used) or None (not verified yet)."""
        if self._unsupported is not None or shape in self._inexact:
            return False
        return True if rows in self._exact.get(shape, ()) else None

    def record(self, shape: tuple, rows: int, exact: bool, why: str = "") -> None:
        with self._lock:
            if exact:
                remembered = self._exact.setdefault(shape, set())
                if len(remembered) < MAX_REMEMBERED_ROWS:
                    remembered.add(rows)
                return
            if shape not in self._inexact:
                self._inexact[shape] = why
                logger.info(
                    "packed oneDNN bf16 linear %d -> %d%s %s on this CPU: that shape uses nn.Linear",
                    shape[0],
                    shape[1],
                    "" if shape[2] else " (no bias)",
                    why,
                )

    def record_unsupported(self, why: str) -> None:
        with self._lock:
            if self._unsupported is None:
                self._unsupported = why
                logger.info("packed oneDNN bf16 linears are not available on this CPU (%s): using nn.Linear", why)

    def report(self) -> dict:
        """JSON-able summary: ``{"unsupported": why | None, "exact": {"K->N": [rows...]}, "inexact": {...}}``."""
        with self._lock:
            name = lambda s: f"{s[0]}->{s[1]}" + ("" if s[2] else " no bias")  # noqa: E731
            return {
                "unsupported": self._unsupported,
                "exact": {name(s): sorted(rows) for s, rows in self._exact.items()},
                "inexact": {name(s): why for s, why in self._inexact.items()},
            }

    def clear(self) -> None:
        with self._lock:
            self._exact.clear()
            self._inexact.clear()
            self._unsupported = None


EXACTNESS = Exactness()


def exactness_report() -> dict:
    """What the packed path has been verified to do on this CPU so far (see :class:`Exactness`)."""
    return EXACTNESS.report()


class PackedLinear(nn.Linear):
    """``nn.Linear`` (same parameters, names and outputs) with the pre-packed CPU bf16 inference path, taken where
    verified exact. ``max_rows`` (class default None: any) limits the path to products of at most that many rows."""

    _packed: tuple[tuple, torch.Tensor] | None = None  # (weight key, packed weight)
    max_rows: int | None = None

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not self._use_packed(input):
            return F.linear(input, self.weight, self.bias)
        shape = (self.in_features, self.out_features, self.bias is not None)
        rows = input.numel() // input.shape[-1]
        verdict = EXACTNESS.verdict(shape, rows)
        if verdict:
            return self._packed_product(input)
        plain = F.linear(input, self.weight, self.bias)
        if verdict is None:
            self._verify(input, plain, shape, rows)
        return plain

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
            and (self.max_rows is None or input.numel() // input.shape[-1] <= self.max_rows)
            and input.is_contiguous()
            and type(input) is torch.Tensor
            and type(weight) in (torch.Tensor, nn.Parameter)
        )

    def _packed_product(self, input: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(input, self._packed_weight(input), self.bias, "none", [], "")

    def _verify(self, input: torch.Tensor, plain: torch.Tensor, shape: tuple, rows: int) -> None:
        """Compare the packed product with ``plain`` (= ``F.linear(input)``) and, for a small product, on random
        inputs of the same shape too; record the verdict for ``(shape, rows)``."""
        try:
            if not torch.equal(self._packed_product(input), plain):
                self._packed = None
                EXACTNESS.record(shape, rows, False, f"differs from nn.Linear at {rows} rows")
                return
            generator = torch.Generator().manual_seed(rows)
            probes = min(MAX_PROBES, -(-VERIFY_ELEMENTS // plain.numel()) - 1)
            for _ in range(probes):
                x = torch.randn(rows, self.in_features, generator=generator).to(torch.bfloat16)
                if not torch.equal(self._packed_product(x), F.linear(x, self.weight, self.bias)):
                    self._packed = None
                    EXACTNESS.record(shape, rows, False, f"differs from nn.Linear at {rows} rows (random input)")
                    return
        except RuntimeError as error:  # e.g. no AVX512: "bf16 path needs the cpu support ..."
            self._packed = None
            EXACTNESS.record_unsupported(str(error).splitlines()[0])
            return
        EXACTNESS.record(shape, rows, True)

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


def use_packed_linears(module: nn.Module, max_rows: int | None = None) -> nn.Module:
    """Turn every plain ``nn.Linear`` inside ``module`` into a :class:`PackedLinear`, in place (the class changes,
    parameters, names and hooks stay). ``max_rows`` limits the packed path to products of at most that many rows
    (the LM's decoding steps, where the per-call weight reorder costs the most). A no-op where torch lacks the
    oneDNN ops."""
    for child in module.modules():
        if type(child) is nn.Linear:
            child.__class__ = PackedLinear
        if type(child) is PackedLinear:
            if max_rows is None:
                child.__dict__.pop("max_rows", None)
            else:
                child.max_rows = max_rows
    return module


def restore_linears(module: nn.Module) -> nn.Module:
    """Undo :func:`use_packed_linears`: plain ``nn.Linear`` again, packed copies freed."""
    for child in module.modules():
        if type(child) is PackedLinear:
            child.clear_packed()
            child.__dict__.pop("max_rows", None)
            child.__class__ = nn.Linear
    return module
