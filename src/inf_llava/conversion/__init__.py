"""Interop with the official INF-LLaVA checkpoints (key names, the stage-1 ``mm_projector.bin`` adapter)."""
