"""Training both INF-LLaVA stages (``pretrain``: DEM + projector; ``finetune``: + the LLM) with accelerate, plus
assembling a fresh model from pretrained backbones (``inf-llava init``). Needs the ``train`` extra."""

from .config import TrainConfig
from .stages import STAGES, StagePolicy, apply_stage, get_stage
from .trainer import Trainer, TrainResult, train

__all__ = ["STAGES", "StagePolicy", "TrainConfig", "TrainResult", "Trainer", "apply_stage", "get_stage", "train"]
