"""Publishing to the Hugging Face Hub: model-directory checks, the generated model card, the upload."""

from .card import CardOptions, build_card
from .model_dir import ModelDir, inspect_model_dir
from .push import HubError, PushPlan, PushResult, plan_push, push, write_dry_run

__all__ = [
    "CardOptions",
    "HubError",
    "ModelDir",
    "PushPlan",
    "PushResult",
    "build_card",
    "inspect_model_dir",
    "plan_push",
    "push",
    "write_dry_run",
]
