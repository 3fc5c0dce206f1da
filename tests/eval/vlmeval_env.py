"""Running VLMEvalKit (installed apart, in $INF_LLAVA_VLMEVAL_SITE, by `make test`) in a subprocess.

PyPI's torchvision is a CUDA build, so beside this CPU torch its compiled ops do not load, and torchvision 0.28's
``_meta_registrations`` then fails on import because ``torchvision::nms`` is not defined. ``prepare()`` defines the
schemas of the two ops it registers unconditionally, so torchvision's Python part (the transforms VLMEvalKit's
modules import) loads; calling ``torchvision.ops.nms`` would still fail (no kernel), and nothing here calls it.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SITE = Path(os.environ.get("INF_LLAVA_VLMEVAL_SITE", ROOT / ".vlmeval-site"))


def prepare() -> None:
    import torch

    library = torch.library.Library("torchvision", "DEF")
    library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    prepare.library = library  # keep the definitions alive


def env(lmu_data: Path) -> dict[str, str]:
    """The environment of a VLMEvalKit subprocess: its folder first on the path, data from ``lmu_data``."""
    if not (SITE / "vlmeval").is_dir():
        raise RuntimeError(f"VLMEvalKit is not installed in {SITE}: run `make test` (or make .vlmeval-site/.installed)")
    path = os.pathsep.join([str(SITE), str(ROOT / "src"), str(ROOT / "tests" / "eval")])
    return dict(os.environ, PYTHONPATH=path, LMUData=str(lmu_data), HF_HUB_OFFLINE="1", PRED_FORMAT="tsv")
