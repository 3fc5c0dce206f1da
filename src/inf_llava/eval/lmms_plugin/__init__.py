"""lmms-eval integration: ``lmms-eval --model inf_llava --model_args pretrained=DIR --tasks ...`` runs this package.

Registration, for every lmms-eval generation:

- lmms-eval >= 0.6 reads the ``lmms_eval.models`` entry point of this package (declared in ``pyproject.toml``),
  which calls :func:`manifest`; nothing to configure;
- older releases (0.2-0.5) import ``LMMS_EVAL_PLUGINS=inf_llava.eval.lmms_plugin``: its ``models`` module lists
  ``AVAILABLE_MODELS`` and the class registers itself with ``register_model("inf_llava")``.

The model class lives in :mod:`.models.inf_llava` (it imports lmms-eval, so nothing here does at import time).
"""

from __future__ import annotations

from typing import Any

MODEL_ID = "inf_llava"
CLASS_PATH = "inf_llava.eval.lmms_plugin.models.inf_llava.InfLlava"


def manifest() -> Any:
    """The entry-point payload: a ``ModelManifest`` naming the (simple) model class."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return ModelManifest(model_id=MODEL_ID, simple_class_path=CLASS_PATH)


__all__ = ["CLASS_PATH", "MODEL_ID", "manifest"]
