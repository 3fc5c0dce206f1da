"""A deterministic synthetic high-resolution VQA task (detail, global and detail-in-context questions)."""

from .dataset import generate, generate_split
from .scenes import Scene, base_view, render, strip_details
from .tasks import KINDS, answer_space

__all__ = ["KINDS", "Scene", "answer_space", "base_view", "generate", "generate_split", "render", "strip_details"]
