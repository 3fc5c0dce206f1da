"""The official scorers as oracles: functions taken from the installed lmms-eval (set up by ``make setup``).

lmms-eval 0.6.1's wheel lacks the task YAML files some task modules read at import time, so the needed top-level
functions are compiled straight from the installed source file (nothing is copied into this repository).
"""

from __future__ import annotations

import ast
import functools
import random
import re
from pathlib import Path
from typing import Any

import numpy as np


def lmms_eval_root() -> Path:
    import lmms_eval  # fails loudly when the set-up did not install it

    return Path(lmms_eval.__file__).parent


def functions(relative_path: str, names: set[str]) -> dict[str, Any]:
    """Compile the named top-level functions of an installed lmms-eval module, with re / random / np available."""
    path = lmms_eval_root() / relative_path
    tree = ast.parse(path.read_text(encoding="utf-8"))
    wanted = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name in names]
    missing = names - {node.name for node in wanted}
    assert not missing, f"{path} no longer defines {missing}"
    namespace: dict[str, Any] = {"re": re, "random": random, "np": np}
    exec(compile(ast.Module(body=wanted, type_ignores=[]), str(path), "exec"), namespace)
    return namespace


@functools.cache
def mmmu() -> dict[str, Any]:
    return functions(
        "tasks/mmmu/utils.py",
        {
            "parse_multi_choice_response",
            "parse_open_response",
            "extract_numbers",
            "check_is_number",
            "normalize_str",
            "eval_open",
            "eval_multi_choice",
        },
    )


@functools.cache
def evalai_processor():
    from lmms_eval.tasks._task_utils.vqa_eval_metric import EvalAIAnswerProcessor

    return EvalAIAnswerProcessor()


@functools.cache
def mmbench_evaluator():
    from lmms_eval.tasks.mmbench.mmbench_evals import MMBench_Evaluator

    return MMBench_Evaluator()
