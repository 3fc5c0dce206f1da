"""The connector from vision width to LM width (``mm_projector`` in LLaVA)."""

from __future__ import annotations

from torch import nn

from ..configuration import PROJECTOR_TYPE


def build_projector(projector_type: str, in_dim: int, out_dim: int) -> nn.Sequential:
    """``linear``: one Linear. ``mlp<N>x_gelu``: Linear(in, out) then N - 1 times (exact GELU, Linear(out, out)).

    Built as an ``nn.Sequential`` so parameter names (``0.weight``, ``2.weight``) match the official checkpoints'
    ``mm_projector.*`` keys. ``mlp2x_gelu`` is the official INF-LLaVA projector.
    """
    match = PROJECTOR_TYPE.match(projector_type)
    if match is None:
        raise ValueError(f"unknown projector_type {projector_type!r}")
    if projector_type == "linear":
        return nn.Sequential(nn.Linear(in_dim, out_dim))
    depth = int(match.group(2))
    if depth < 1:
        raise ValueError(f"projector depth must be >= 1, got {projector_type!r}")
    layers: list[nn.Module] = [nn.Linear(in_dim, out_dim)]
    for _ in range(depth - 1):
        layers += [nn.GELU(), nn.Linear(out_dim, out_dim)]
    return nn.Sequential(*layers)
