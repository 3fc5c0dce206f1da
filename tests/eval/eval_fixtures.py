"""Small benchmark files in each real distributed format, written by the tests (no download).

- HF releases: Parquet written by ``datasets`` (``Image`` features, hub folder layout such as
  ``en/dev-00000-of-00001.parquet``), and a ``save_to_disk`` folder (Arrow);
- MMBench: the OpenCompass TSV (base64 images; circular copies refer to the main row's image by index);
- official layouts: SEED-Bench.json + image folder, ScienceQA problems.json + images/<split>/<pid>/image.png,
  OK-VQA question + annotation JSON + COCO image files, LLaVA-Bench questions/context/answers JSONL + images/.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image


def image(seed: int, size: tuple[int, int] = (30, 20)) -> Image.Image:
    rng = np.random.RandomState(seed)
    return Image.fromarray(rng.randint(0, 256, (size[1], size[0], 3), dtype=np.uint8))


JPEG = {"quality": 100, "subsampling": 0}  # near-lossless, so tests can compare pixels


def image_bytes(seed: int, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image(seed).save(buffer, fmt, **(JPEG if fmt == "JPEG" else {}))
    return buffer.getvalue()


def _write_hf_parquet(rows: list[dict], features: dict, path: Path) -> Path:
    import datasets

    datasets.disable_progress_bars()
    path.parent.mkdir(parents=True, exist_ok=True)
    dataset = datasets.Dataset.from_list(rows, features=datasets.Features(features))
    dataset.to_parquet(str(path))
    return path


def _strings(*names: str) -> dict:
    import datasets

    return {name: datasets.Value("string") for name in names}


# ---- MMBench -----------------------------------------------------------------------------------------------------
MMBENCH_QUESTIONS = [
    # (question, hint, options, answer index)
    ("What animal is shown?", None, ["cat", "dog", "bird"], 0),
    ("Which colour dominates?", "Look at the background.", ["red", "green", "blue", "gray"], 2),
    ("How many objects?", None, ["one", "two"], 1),
]


def mmbench_rows(language: str = "en") -> list[dict]:
    """Main rows plus their circular copies (index + k * 1e6, options rotated, answer letter moved)."""
    rows = []
    for number, (question, hint, options, answer) in enumerate(MMBENCH_QUESTIONS):
        n = len(options)
        for k in range(n):
            rotated = options[k:] + options[:k]
            row = {
                "index": number + k * 1_000_000,
                "question": question,
                "hint": hint,
                "answer": "ABCD"[(answer - k) % n],
                "category": "attribute" if number else "object",
                "source": "test",
                "l2-category": "perception",
                "comment": None,
                "split": "dev",
                "image_seed": number,
            }
            for letter, text in zip("ABCD", rotated + [None] * (4 - n)):
                row[letter] = text
            rows.append(row)
    return rows


def write_mmbench_tsv(folder: Path, language: str = "en") -> Path:
    """OpenCompass/VLMEvalKit TSV: copies carry the main row's index in ``image`` instead of the base64."""
    import pandas as pd

    records = []
    for row in mmbench_rows(language):
        seed = row.pop("image_seed")
        row["image"] = base64.b64encode(image_bytes(seed, "JPEG")).decode() if row["index"] < 1_000_000 else str(seed)
        records.append(row)
    columns = ["index", "question", "hint", "A", "B", "C", "D", "answer", "category", "image", "source"]
    columns += ["l2-category", "comment", "split"]
    path = folder / f"MMBench_DEV_{language.upper()}.tsv"
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(records, columns=columns).to_csv(path, sep="\t", index=False)
    return path


def write_mmbench_hub(folder: Path) -> Path:
    """The ``lmms-lab/MMBench`` snapshot layout: en/ and cn/ configs, dev and test splits."""
    import datasets

    features = {**_strings("question", "hint", "A", "B", "C", "D", "answer", "category", "source")}
    features.update(_strings("L2-category", "comment", "split"))
    features.update(index=datasets.Value("int64"), image=datasets.Image())
    for config in ("en", "cn"):
        rows = []
        for row in mmbench_rows(config):
            seed = row.pop("image_seed")
            row["L2-category"] = row.pop("l2-category")
            row["image"] = image(seed + (10 if config == "cn" else 0))
            rows.append(row)
        _write_hf_parquet(rows, features, folder / config / "dev-00000-of-00001.parquet")
        test_rows = [{**r, "answer": None} for r in rows[:2]]
        _write_hf_parquet(test_rows, features, folder / config / "test-00000-of-00001.parquet")
    return folder


# ---- SEED-Bench --------------------------------------------------------------------------------------------------
SEED_QUESTIONS = [
    {"question": "What is in the picture?", "choice_a": "a cat", "choice_b": "a car", "choice_c": "a tree",
     "choice_d": "a house", "answer": "B", "question_type_id": 1},
    {"question": "Where is the object?", "choice_a": "left", "choice_b": "right", "choice_c": "top",
     "choice_d": "bottom", "answer": "D", "question_type_id": 3},
    {"question": "How many dots?", "choice_a": "1", "choice_b": "2", "choice_c": "3", "choice_d": "4",
     "answer": "A", "question_type_id": 5},
]  # fmt: skip


def write_seed_official(folder: Path) -> Path:
    """``SEED-Bench.json`` + ``SEED-Bench-image/``; one extra video question (skipped for the image score)."""
    (folder / "SEED-Bench-image").mkdir(parents=True, exist_ok=True)
    questions = []
    for number, q in enumerate(SEED_QUESTIONS):
        name = f"{1000 + number}.jpg"
        image(20 + number).save(folder / "SEED-Bench-image" / name, **JPEG)
        questions.append(
            {**q, "question_id": str(100 + number), "data_id": name, "data_type": "image", "segment": None}
        )
    video = {**SEED_QUESTIONS[0], "question_id": "999", "data_id": "v.mp4", "data_type": "video", "segment": [0, 5]}
    questions.append({**video, "question_type_id": 10})
    path = folder / "SEED-Bench.json"
    path.write_text(json.dumps({"questions": questions, "question_type": {"Scene Understanding": 1}}))
    return path


def write_seed_hub(folder: Path) -> Path:
    import datasets

    features = _strings("question", "choice_a", "choice_b", "choice_c", "choice_d", "answer", "question_id")
    features.update(_strings("data_id", "data_type", "segment"))
    features.update(question_type_id=datasets.Value("int64"), image=datasets.Sequence(datasets.Image()))
    rows = []
    for number, q in enumerate(SEED_QUESTIONS):
        rows.append({**q, "question_id": str(100 + number), "data_id": f"{number}.jpg", "data_type": "image",
                     "segment": None, "image": [image(20 + number)]})  # fmt: skip
    rows.append({**SEED_QUESTIONS[1], "question_id": "999", "data_id": "v", "data_type": "video", "segment": "[0, 5]",
                 "question_type_id": 10, "image": [image(1), image(2)]})  # fmt: skip
    return _write_hf_parquet(rows, features, folder / "data" / "test-00000-of-00001.parquet")


# ---- AI2D --------------------------------------------------------------------------------------------------------
AI2D_ROWS = [
    ("Which label shows the root?", ["A", "B", "C", "D"], "1"),
    ("What eats the grass?", ["deer", "hawk", "sun", "soil"], "0"),
    ("Which stage comes last?", ["egg", "larva", "pupa", "adult"], "3"),
]


def write_ai2d_hub(folder: Path) -> Path:
    import datasets

    features = {**_strings("question", "answer"), "options": datasets.Sequence(datasets.Value("string"))}
    features["image"] = datasets.Image()
    rows = [{"question": q, "options": o, "answer": a, "image": image(30 + i)} for i, (q, o, a) in enumerate(AI2D_ROWS)]
    return _write_hf_parquet(rows, features, folder / "data" / "test-00000-of-00001.parquet")


# ---- ScienceQA ---------------------------------------------------------------------------------------------------
SQA_PROBLEMS = {
    "10": {"question": "Which is a mammal?", "choices": ["shark", "whale"], "answer": 1, "hint": "",
           "image": "image.png", "subject": "natural science", "split": "test"},
    "11": {"question": "Which word is a noun?", "choices": ["run", "table", "blue"], "answer": 1,
           "hint": "Nouns name things.", "image": "image.png", "subject": "language science", "split": "test"},
    "12": {"question": "Text only?", "choices": ["yes", "no"], "answer": 0, "hint": "", "image": None,
           "subject": "social science", "split": "test"},
    "13": {"question": "Training problem", "choices": ["a", "b"], "answer": 0, "hint": "", "image": "image.png",
           "subject": "social science", "split": "train"},
}  # fmt: skip


def write_sqa_official(folder: Path) -> Path:
    for pid, problem in SQA_PROBLEMS.items():
        if problem["image"]:
            target = folder / "images" / problem["split"] / pid
            target.mkdir(parents=True, exist_ok=True)
            image(40 + int(pid)).save(target / "image.png")
    path = folder / "problems.json"
    path.write_text(json.dumps(SQA_PROBLEMS))
    return path


def write_sqa_hub(folder: Path) -> Path:
    import datasets

    features = _strings("question", "hint", "subject")
    features.update(
        choices=datasets.Sequence(datasets.Value("string")), answer=datasets.Value("int64"), image=datasets.Image()
    )
    rows = []
    for pid, p in SQA_PROBLEMS.items():
        if p["split"] == "test" and p["image"]:
            rows.append({"question": p["question"], "hint": p["hint"], "subject": p["subject"], "choices": p["choices"],
                         "answer": p["answer"], "image": image(40 + int(pid))})  # fmt: skip
    return _write_hf_parquet(rows, features, folder / "ScienceQA-IMG" / "test-00000-of-00001.parquet")


# ---- MMMU --------------------------------------------------------------------------------------------------------
MMMU_ROWS = [
    {"id": "validation_Art_Theory_1", "question": "Which style is shown in <image 1>?",
     "options": "['Baroque', 'Cubism', 'Impressionism', 'Gothic']", "answer": "B", "question_type": "multiple-choice",
     "images": (1,)},
    {"id": "validation_Math_2", "question": "Compare <image 2> with <image 1>. What is x?", "options": "[]",
     "answer": "12", "question_type": "open", "images": (1, 2)},
    {"id": "validation_Physics_3", "question": "Which option matches?", "options": "['<image 1>', '<image 2>']",
     "answer": "A", "question_type": "multiple-choice", "images": (1, 2)},
]  # fmt: skip


def write_mmmu_hub(folder: Path) -> Path:
    import datasets

    features = _strings("id", "question", "options", "answer", "question_type", "explanation", "img_type")
    features.update({f"image_{k}": datasets.Image() for k in range(1, 8)})
    rows = []
    for number, spec in enumerate(MMMU_ROWS):
        row = {k: v for k, v in spec.items() if k != "images"}
        row.update(explanation="", img_type="['Diagrams']")
        for k in range(1, 8):
            row[f"image_{k}"] = image(50 + 10 * number + k) if k in spec["images"] else None
        rows.append(row)
    return _write_hf_parquet(rows, features, folder / "data" / "validation-00000-of-00001.parquet")


# ---- OK-VQA ------------------------------------------------------------------------------------------------------
OKVQA_ITEMS = [
    (501, 5001, "What sport is this?", ["tennis"] * 6 + ["tenni"] * 4),
    (502, 5002, "What is the man holding?", ["umbrella"] * 4 + ["umbrellas"] * 4 + ["parasol"] * 2),
    (503, 5003, "How many legs does it have?", ["4"] * 8 + ["four"] * 2),
]


def write_okvqa_official(folder: Path) -> Path:
    """VQA-format question + annotation files and COCO-named images under val2014/."""
    (folder / "val2014").mkdir(parents=True, exist_ok=True)
    questions, annotations = [], []
    for qid, image_id, question, answers in OKVQA_ITEMS:
        image(image_id).save(folder / "val2014" / f"COCO_val2014_{image_id:012d}.jpg", **JPEG)
        questions.append({"image_id": image_id, "question": question, "question_id": qid})
        annotations.append(
            {
                "question_id": qid,
                "image_id": image_id,
                "question_type": "other",
                "answer_type": "other",
                "answers": [
                    {"answer_id": i + 1, "answer": a, "raw_answer": a, "answer_confidence": "yes"}
                    for i, a in enumerate(answers)
                ],
            }
        )
    meta = {"data_subtype": "val2014", "task_type": "Open-Ended", "data_type": "mscoco"}
    (folder / "OpenEnded_mscoco_val2014_questions.json").write_text(json.dumps({**meta, "questions": questions}))
    (folder / "mscoco_val2014_annotations.json").write_text(json.dumps({**meta, "annotations": annotations}))
    return folder


def write_okvqa_saved(folder: Path) -> Path:
    """The HF release as a ``datasets.save_to_disk`` folder (Arrow)."""
    import datasets

    features = _strings("question_id", "question", "question_type", "answer_type")
    features.update(answers=datasets.Sequence(datasets.Value("string")), image=datasets.Image())
    datasets.disable_progress_bars()
    rows = [
        {"question_id": str(q), "question": text, "answers": a, "question_type": "other", "answer_type": "other",
         "image": image(i)}
        for q, i, text, a in OKVQA_ITEMS
    ]  # fmt: skip
    datasets.Dataset.from_list(rows, features=datasets.Features(features)).save_to_disk(str(folder))
    return folder


# ---- LLaVA-Bench -------------------------------------------------------------------------------------------------
LLAVA_ITEMS = [
    (0, "001.jpg", "conv", "What is the colour of the car?", "The car is red.", ["A red car on a street."]),
    (1, "001.jpg", "detail", "Describe the image in detail.", "A red car parks on a quiet street.", None),
    (2, "002.jpg", "complex", "Why might the man be smiling?", "He seems to enjoy the sunny day.", None),
]


def write_llava_official(folder: Path) -> Path:
    (folder / "images").mkdir(parents=True, exist_ok=True)
    captions = {"001.jpg": "A red car parked on a quiet street.", "002.jpg": "A man smiling in the sun."}
    with (folder / "questions.jsonl").open("w") as q, (folder / "answers_gpt4.jsonl").open("w") as a:
        for qid, name, category, question, reference, _ in LLAVA_ITEMS:
            q.write(json.dumps({"question_id": qid, "image": name, "text": question, "category": category}) + "\n")
            a.write(json.dumps({"question_id": qid, "text": reference, "answer_id": f"a{qid}", "model_id": "gpt-4"}))
            a.write("\n")
    with (folder / "context.jsonl").open("w") as c:
        for number, (name, caption) in enumerate(captions.items()):
            image(60 + number).save(folder / "images" / name, **JPEG)
            c.write(json.dumps({"id": f"c{number}", "image": name, "caption": caption}) + "\n")
    return folder


def write_llava_hub(folder: Path) -> Path:
    import datasets

    features = _strings("question", "gpt_answer", "category", "image_id", "caption")
    features.update(question_id=datasets.Value("int64"), image=datasets.Image())
    rows = [
        {"question_id": qid, "question": question, "gpt_answer": reference, "category": category, "image_id": name,
         "caption": "A scene.", "image": image(60 + qid)}
        for qid, name, category, question, reference, _ in LLAVA_ITEMS
    ]  # fmt: skip
    return _write_hf_parquet(rows, features, folder / "data" / "train-00000-of-00001.parquet")


# One fixture per benchmark for the end-to-end runs, alternating formats across benchmarks.
WRITERS = {
    "mmbench_en": lambda d: write_mmbench_tsv(d, "en"),
    "mmbench_cn": write_mmbench_hub,
    "seedbench": write_seed_official,
    "ai2d": write_ai2d_hub,
    "scienceqa_img": write_sqa_official,
    "mmmu_val": write_mmmu_hub,
    "okvqa": write_okvqa_official,
    "llava_bench_wild": write_llava_official,
}
