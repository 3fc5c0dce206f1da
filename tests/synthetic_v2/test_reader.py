"""The reader check (``reader.py``): oracle token labels say what each image token's cell holds, likelihood scoring
picks the most likely candidate, and the check trains the LLM alone."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from inf_llava.processing.tokenization import IGNORE_INDEX
from inf_llava.synthetic.v2.experiment import AblationRecipe, build_model
from inf_llava.synthetic.v2.reader import ReaderCheck, best_candidates, run_reader_check, token_labels
from inf_llava.synthetic.v2.task import GLYPH_CLASSES, SHAPE_CLASSES, generate_split, layout, render, sample_scene

RECIPE = AblationRecipe(vision_width=32, vision_layers=2, vision_heads=2, lm_width=32, lm_layers=1, lm_heads=2)


def _as_record_scene(scene) -> dict:
    return {
        "size": scene.size,
        "shapes": [{"kind": s.kind, "color": s.color, "quadrant": s.quadrant} for s in scene.shapes],
        "glyphs": [{"quadrant": g.quadrant, "type": g.type, "on_shape": g.on_shape} for g in scene.glyphs],
        "seed": scene.seed,
    }


@pytest.mark.parametrize("index", range(20))
def test_token_labels_place_every_glyph_and_shape_in_its_cell(index):
    scene = sample_scene(random.Random(index), 72)
    shapes, glyphs = token_labels(np.array(render(scene)), _as_record_scene(scene), side=6)
    _, corners = layout(scene)
    assert int((glyphs > 0).sum()) == len(scene.glyphs)
    for glyph in scene.glyphs:
        y, x = corners[glyph.quadrant]
        cell = ((y + 1) // 12) * 6 + (x + 1) // 12  # the glyph's centre pixel
        assert GLYPH_CLASSES[glyphs[cell]] == glyph.type
    grid = shapes.reshape(6, 6)
    for shape in scene.shapes:
        rows = slice(0, 3) if shape.quadrant.startswith("top") else slice(3, 6)
        cols = slice(0, 3) if shape.quadrant.endswith("left") else slice(3, 6)
        label = SHAPE_CLASSES.index(f"{shape.color} {shape.kind}")
        assert (grid[rows, cols] == label).any()
        assert int((grid == label).sum()) == int((grid[rows, cols] == label).sum())  # never outside its quadrant


def test_token_labels_reject_a_size_that_does_not_split():
    scene = sample_scene(random.Random(0), 72)
    with pytest.raises(ValueError, match="does not split into 7 x 7"):
        token_labels(np.array(render(scene)), _as_record_scene(scene), side=7)


def test_best_candidates_sums_supervised_log_probs_per_group():
    # two questions: 2 candidates, then 3; each row's supervised tokens are positions 1 and 2
    log_probs = torch.full((5, 3, 4), -5.0)
    labels = torch.full((5, 3), IGNORE_INDEX)
    labels[:, 1:] = torch.tensor([[1, 2]] * 5)
    log_probs[1, 0, 1] = log_probs[1, 1, 2] = -0.1  # question 1: candidate 1 wins
    log_probs[2, 0, 1] = -0.1  # question 2: candidate 0 only half likely ...
    log_probs[4, 0, 1] = log_probs[4, 1, 2] = -1.0  # ... candidate 2 wins on the sum
    log_probs[3, 2, 3] = 0.0  # an unsupervised position does not count
    assert best_candidates(log_probs, labels, [2, 3]) == [1, 2]


@pytest.mark.parametrize("tokens", ["oracle", "model"])
def test_reader_check_trains_the_llm_alone(tmp_path, tokens):
    generate_split(tmp_path, "train", 12, questions_per_image=5)
    generate_split(tmp_path, "validation", 10)
    model, processor = build_model(RECIPE, "inf_llava", seed=0)
    frozen = {
        k: v.clone() for k, v in model.state_dict().items() if not k.startswith(("model.language_model", "lm_head"))
    }
    lm_before = model.lm_head.weight.detach().clone()
    curve = run_reader_check(
        model,
        processor,
        tmp_path,
        ReaderCheck(tokens=tokens, steps=40, batch_size=4, lr=3e-3, eval_every=20),
        log=lambda _: None,
    )
    assert [row["step"] for row in curve] == [20, 40]
    assert curve[1]["loss"] < curve[0]["loss"]
    validation = curve[-1]["validation"]
    assert set(validation) == {"overall", "global", "detail", "detail_in_context", "glyph_on_shape", "shape_with_glyph"}
    assert all(0.0 <= v <= 1.0 for v in validation.values())
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in frozen.items())  # tower, DEM, projector untouched
    assert not torch.equal(model.lm_head.weight, lm_before)


def test_reader_check_command_saves_the_trained_llm(tmp_path):
    from safetensors.torch import load_file

    from inf_llava.synthetic.v2.reader import main
    from inf_llava.training.assemble import save_model

    data = tmp_path / "data"
    generate_split(data, "train", 8, questions_per_image=5)
    generate_split(data, "validation", 5)
    model, processor = build_model(RECIPE, "inf_llava", seed=0)
    save_model(model, processor, tmp_path / "init")
    main(
        [
            "--model",
            str(tmp_path / "init"),
            "--data",
            str(data),
            "--steps",
            "4",
            "--batch-size",
            "2",
            "--eval-every",
            "4",
            "--save",
            str(tmp_path / "out"),
        ]
    )
    before, after = (load_file(str(tmp_path / d / "model.safetensors")) for d in ("init", "out"))
    assert not torch.equal(before["lm_head.weight"], after["lm_head.weight"])
    tower = [k for k in before if "vision_tower" in k]
    assert tower and all(torch.equal(before[k], after[k]) for k in tower)
    assert json.loads((tmp_path / "out" / "reader_curve.json").read_text())[0]["step"] == 4
