"""VLMEvalKit dataset names and TSV rows, mapped onto this package's benchmarks.

VLMEvalKit's TSVs (``index``, base64 ``image``, ``question``, options in columns ``A``, ``B``, ..., ``hint``,
``answer`` letter, ``category``, ...) are turned into the docs each :class:`inf_llava.eval.base.Benchmark` reads,
and the benchmark's own ``build_prompt`` makes the task text: the prompt strings live in one place
(``inf_llava/eval/benchmarks/``), whichever harness runs them. Nothing here imports VLMEvalKit.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Callable, Mapping
from typing import Any

from ..base import Benchmark
from ..benchmarks.seedbench import CHOICE_FIELDS

Doc = dict[str, Any]


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value == ""


def options_of(row: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The (letter, text) options of a VLMEvalKit MCQ row, in letter order, stopping at the first empty one."""
    out = []
    for letter in string.ascii_uppercase:
        if letter not in row or _missing(row[letter]):
            break
        out.append((letter, str(row[letter])))
    return out


def _letter_index(row: Mapping[str, Any], letters: list[str]) -> int | None:
    answer = row.get("answer")
    if _missing(answer):
        return None
    answer = str(answer).strip()
    return letters.index(answer) if answer in letters else None


def _plain(row: Mapping[str, Any]) -> Doc:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items() if k != "image"}


def mmbench_doc(row: Mapping[str, Any]) -> Doc:
    """The VLMEvalKit MMBench TSV is the layout the MMBench benchmark reads (NaN hints / options kept as NaN)."""
    return {k: v for k, v in row.items() if k != "image"}


def seedbench_doc(row: Mapping[str, Any]) -> Doc:
    doc = _plain(row)
    for letter, field in zip("ABCD", CHOICE_FIELDS):
        doc[field] = row.get(letter)
    doc.setdefault("question_id", row.get("index"))
    doc["data_type"] = "image"
    return doc


def _listed_options(row: Mapping[str, Any], field: str) -> Doc:
    """The row with its lettered options as a list under ``field`` and the answer as the option's 0-based index."""
    options = options_of(row)
    doc = _plain(row)
    doc[field] = [text for _, text in options]
    doc["answer"] = _letter_index(row, [letter for letter, _ in options])
    return doc


def ai2d_doc(row: Mapping[str, Any]) -> Doc:
    return _listed_options(row, "options")


def scienceqa_doc(row: Mapping[str, Any]) -> Doc:
    doc = _listed_options(row, "choices")
    doc["hint"] = None if _missing(row.get("hint")) else str(row["hint"])
    return doc


def mmmu_doc(row: Mapping[str, Any]) -> Doc:
    options = [text for _, text in options_of(row)]
    doc = _plain(row)
    doc["id"] = str(row.get("id", row.get("index")))
    doc["options"] = repr(options)  # MMMU rows carry their options as a Python list literal
    doc["question_type"] = "multiple-choice" if options else "open"
    return doc


def question_doc(row: Mapping[str, Any]) -> Doc:
    return _plain(row)


# VLMEvalKit dataset name -> (this package's benchmark, row converter). OK-VQA is not a VLMEvalKit dataset: a TSV
# named OK-VQA.tsv / OKVQA.tsv in $LMUData is a custom VQA dataset there, and gets OK-VQA's prompt here.
DATASETS: Mapping[str, tuple[str, Callable[[Mapping[str, Any]], Doc]]] = {
    "MMBench_DEV_EN": ("mmbench_en", mmbench_doc),
    "MMBench_TEST_EN": ("mmbench_en", mmbench_doc),
    "MMBench": ("mmbench_en", mmbench_doc),
    "MMBench_DEV_CN": ("mmbench_cn", mmbench_doc),
    "MMBench_TEST_CN": ("mmbench_cn", mmbench_doc),
    "MMBench_CN": ("mmbench_cn", mmbench_doc),
    "SEEDBench_IMG": ("seedbench", seedbench_doc),
    "AI2D_TEST": ("ai2d", ai2d_doc),
    "ScienceQA_TEST": ("scienceqa_img", scienceqa_doc),
    "ScienceQA_VAL": ("scienceqa_img", scienceqa_doc),
    "MMMU_DEV_VAL": ("mmmu_val", mmmu_doc),
    "OK-VQA": ("okvqa", question_doc),
    "OKVQA": ("okvqa", question_doc),
    "LLaVABench": ("llava_bench_wild", question_doc),
}

_MMMU_IMAGE = re.compile(r"<image (\d+)>")


def benchmark_for(dataset: str | None) -> Benchmark | None:
    """This package's benchmark behind a VLMEvalKit dataset name (None: VLMEvalKit's own prompt applies)."""
    from .. import get_benchmark

    entry = DATASETS.get(dataset or "")
    return get_benchmark(entry[0]) if entry else None


def task_text(dataset: str, row: Mapping[str, Any]) -> str:
    """The task text of ``row`` exactly as :meth:`Benchmark.build_prompt` writes it for the mapped benchmark."""
    name, convert = DATASETS[dataset]
    from .. import get_benchmark

    return get_benchmark(name).build_prompt(convert(row))


def images_for(dataset: str, row: Mapping[str, Any], paths: list[str]) -> list[str]:
    """The row's dumped images in prompt order: MMMU keeps those its prompt refers to (``<image k>`` = the k-th
    image of the row, unique, sorted as the MMMU benchmark orders them); others keep all."""
    if DATASETS[dataset][0] != "mmmu_val":
        return paths
    text = task_text(dataset, row)
    numbers = sorted({m.group(1) for m in _MMMU_IMAGE.finditer(text)})  # string order, as upstream sorts them
    return [paths[int(k) - 1] for k in numbers if 0 < int(k) <= len(paths)] or paths


__all__ = ["DATASETS", "benchmark_for", "images_for", "options_of", "task_text"]
