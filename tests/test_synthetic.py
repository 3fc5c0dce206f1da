import hashlib
import json
import random

import numpy as np
import pytest

from inf_llava.synthetic import KINDS, answer_space, base_view, generate_split, render, strip_details
from inf_llava.synthetic.tasks import questions, sample_scene


@pytest.mark.parametrize("grid,size", [(3, 96), (3, 72), (5, 100)])
def test_details_are_invisible_in_the_base_view_by_construction(grid, size):
    rng = random.Random(0)
    for index in range(60):
        kind = KINDS[index % 3]
        scene = sample_scene(rng, kind, size, grid)
        image, empty = render(scene), render(strip_details(scene))
        assert np.array_equal(base_view(image, grid), base_view(empty, grid))
        if kind != "global":
            assert not np.array_equal(np.asarray(image), np.asarray(empty))  # the detail is there at full resolution


def test_base_view_equals_the_models_low_resolution_view():
    import torch
    import torch.nn.functional as F

    scene = sample_scene(random.Random(1), "detail", 96, 3)
    pixels = torch.from_numpy(np.array(render(scene))).permute(2, 0, 1)[None].float()
    low = F.interpolate(pixels, size=(32, 32), mode="bicubic", align_corners=False)
    assert torch.equal(low[0].permute(1, 2, 0), torch.from_numpy(base_view(render(scene), 3)).float())


def test_splits_are_deterministic_and_distinct(tmp_path):
    a = generate_split(tmp_path / "a", "test", 12, seed=3)
    b = generate_split(tmp_path / "b", "test", 12, seed=3)
    c = generate_split(tmp_path / "c", "validation", 12, seed=3)
    ra, rb, rc = (json.loads(p.read_text()) for p in (a, b, c))
    assert [r["conversations"] for r in ra] == [r["conversations"] for r in rb]
    digest = lambda root, rec: hashlib.sha256((root / rec["image"]).read_bytes()).hexdigest()  # noqa: E731
    assert [digest(tmp_path / "a", r) for r in ra] == [digest(tmp_path / "b", r) for r in rb]
    assert [digest(tmp_path / "a", r) for r in ra] != [digest(tmp_path / "c", r) for r in rc]


def test_records_are_llava_format_and_balanced(tmp_path):
    path = generate_split(tmp_path, "train", 30, seed=0, questions_per_image=3)
    records = json.loads(path.read_text())
    assert {r["kind"] for r in records} == set(KINDS)
    for record in records:
        conv = record["conversations"]
        assert conv[0]["from"] == "human" and conv[0]["value"].startswith("<image>\n")
        assert [t["from"] for t in conv] == ["human", "gpt"] * (len(conv) // 2)
        assert sum(t["value"].count("<image>") for t in conv) == 1
        for turn in conv[1::2]:
            question = conv[conv.index(turn) - 1]["value"].replace("<image>\n", "")
            assert turn["value"] in answer_space(question)
        assert (tmp_path / record["image"]).is_file()


def test_questions_are_well_defined():
    rng = random.Random(5)
    for index in range(200):
        kind = KINDS[index % 3]
        scene = sample_scene(rng, kind, 96, 3)
        qas = questions(scene, kind, rng)
        assert qas, scene
        assert len({qa.question for qa in qas}) == len(qas)  # no ambiguous duplicates


def test_the_detail_answer_is_the_colour_of_the_box_at_full_resolution():
    from inf_llava.synthetic.scenes import BOX_FILL, COLORS

    rng = random.Random(7)
    for _ in range(30):
        scene = sample_scene(rng, "detail", 72, 3)
        (qa,) = questions(scene, "detail", rng)
        pixels = np.asarray(render(scene)).reshape(-1, 3)
        empty = np.asarray(render(strip_details(scene))).reshape(-1, 3)
        changed = pixels[(pixels != empty).any(axis=1)]
        assert (changed == COLORS[qa.answer]).all()  # the mesh has exactly the answer's colour
        box_pixels = (empty == BOX_FILL).all(axis=1).sum()
        assert 0.7 < len(changed) / box_pixels < 8 / 9  # 8/9 of the inside (one-pixel margin left white)
        assert qa.answer in answer_space(qa.question)


def test_detail_in_context_boxes_differ_in_colour_and_place():
    rng = random.Random(8)
    for _ in range(50):
        scene = sample_scene(rng, "detail_in_context", 72, 3)
        a, b = scene.boxes
        assert a.color != b.color and a.quadrant != b.quadrant
        answers = {qa.question: qa.answer for qa in questions(scene, "detail_in_context", rng)}
        assert answers == {f"Where is the {a.color} box?": a.quadrant, f"Where is the {b.color} box?": b.quadrant}


def test_unknown_questions_have_no_answer_space():
    with pytest.raises(ValueError, match="not a question"):
        answer_space("How many dots are there?")
