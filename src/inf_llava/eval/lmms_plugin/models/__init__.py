"""The ``{plugin}.models`` module that lmms-eval's ``LMMS_EVAL_PLUGINS`` mechanism imports."""

AVAILABLE_MODELS = {"inf_llava": "InfLlava"}
