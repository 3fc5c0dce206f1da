"""The wide-and-tall synthetic task (fixed vs dynamic DCM grids): what each grid's canvas holds, the splits, the
stage-1 labels, and a fast slice of the experiment (``make aspect``)."""

import json
import random
from dataclasses import asdict, replace

import numpy as np
import pytest
import torch

from inf_llava.geometry import select_grid
from inf_llava.processing.image_processing import InfLlavaImageProcessor
from inf_llava.synthetic import aspect
from inf_llava.synthetic.aspect import ORIENTATIONS, box_rectangles, complement, render, sample_scene
from inf_llava.synthetic.aspect_experiment import AspectRecipe
from inf_llava.synthetic.encoder_pretraining import BOX_CLASSES, SHAPE_CLASSES, SLOTS, scene_labels
from inf_llava.synthetic.tasks import KINDS, answer_space

VIEW = 24


def _grids():
    return [(h, w) for h in range(1, 10) for w in range(1, 10) if h * w <= 9]


@pytest.mark.parametrize("orientation,grid", [("wide", (2, 4)), ("tall", (4, 2))])
def test_dynamic_grid_keeps_two_thirds_of_the_resolution_where_fixed_keeps_half(orientation, grid):
    height, width = ORIENTATIONS[orientation]
    assert select_grid(height, width, _grids(), VIEW) == grid
    assert (grid[0] * VIEW) / height == pytest.approx(2 / 3) and (grid[1] * VIEW) / width == pytest.approx(2 / 3)
    assert 3 * VIEW / max(height, width) == pytest.approx(1 / 2)  # fixed 3x3: padded to a square, 72 px canvas


def _canvas_pair(scene, size):
    processor = InfLlavaImageProcessor(size={"height": size[0], "width": size[1]})
    with_detail = processor.process_one(render(scene), size)
    without = processor.process_one(render(replace(scene, details=False)), size)
    return np.abs(with_detail - without).max(axis=0)  # per canvas pixel, over channels (normalised units)


def _interior(scene, scale, offset, margin=2):
    ((top, left, h, w),) = box_rectangles(scene).values()
    oy, ox = offset
    return (
        slice(int(oy + (top + 1) * scale) + margin, int(oy + (top + h - 1) * scale) - margin),
        slice(int(ox + (left + 1) * scale) + margin, int(ox + (left + w - 1) * scale) - margin),
    )


@pytest.mark.parametrize("orientation", ["wide", "tall"])
def test_band_limited_detail_is_gone_from_the_fixed_canvas_and_kept_in_the_dynamic_one(orientation):
    """Inside a box the official 3x3 canvas is the same with and without the stripes; the 2x4 / 4x2 canvas keeps
    them at full contrast. The fixed canvas keeps a weak trace at the box's rim only (bounded here)."""
    rng = random.Random(7)
    for _ in range(12):
        scene = sample_scene(rng, "detail", orientation)
        height, width = scene.height, scene.width
        fixed = _canvas_pair(scene, (72, 72))
        offset = ((72 - height / 2) / 2, (72 - width / 2) / 2)
        assert fixed[_interior(scene, 0.5, offset)].max() < 0.25
        grid = select_grid(height, width, _grids(), VIEW)
        dynamic = _canvas_pair(scene, (grid[0] * VIEW, grid[1] * VIEW))
        kept = dynamic[_interior(scene, 2 / 3, (0, 0))]
        assert kept.max() > 1.0 and np.median(kept) > 0.5  # the stripes at (nearly) full contrast
        assert fixed.max() < 0.2 * kept.max() + 0.05  # rim residue a fraction of the detail's contrast


def test_stripes_average_to_grey_and_complements_are_distinct():
    for color in aspect.COLORS:
        partner = complement(color)
        assert all((a + b) == 2 * aspect.GREY for a, b in zip(aspect.COLORS[color], partner))
        row = aspect.stripes(color, 1, aspect.BOX_SIDE)[0].astype(int)
        plateau = row[8:12]  # past the taper: two pixels of the colour, two of its complement
        assert sorted(map(tuple, plateau)) == sorted([aspect.COLORS[color]] * 2 + [partner] * 2)
    pairs = {frozenset((aspect.COLORS[c], complement(c))) for c in aspect.COLORS}
    assert len(pairs) == len(aspect.COLORS)


def test_splits_are_balanced_deterministic_llava_records(tmp_path):
    a = aspect.generate_split(tmp_path / "a", "train", 24, seed=1, questions_per_image=3)
    b = aspect.generate_split(tmp_path / "b", "train", 24, seed=1, questions_per_image=3)
    ra, rb = json.loads(a.read_text()), json.loads(b.read_text())
    assert [r["conversations"] for r in ra] == [r["conversations"] for r in rb]
    assert {(r["kind"], r["orientation"]) for r in ra} == {(k, o) for k in KINDS for o in ORIENTATIONS}
    for record in ra:
        from PIL import Image

        image = Image.open(tmp_path / "a" / record["image"])
        assert (image.height, image.width) == ORIENTATIONS[record["orientation"]]
        conv = record["conversations"]
        assert conv[0]["value"].startswith("<image>\n")
        for question, answer in zip(conv[0::2], conv[1::2]):
            assert answer["value"] in answer_space(question["value"].replace("<image>\n", ""))


def test_scene_labels_name_every_slot():
    scene = sample_scene(random.Random(3), "detail_in_context", "wide")
    labels = scene_labels(json.loads(json.dumps(asdict(scene))))
    named = {slot: (SHAPE_CLASSES if slot[1] == "shape" else BOX_CLASSES)[i] for slot, i in zip(SLOTS, labels)}
    (shape,) = scene.shapes
    assert named[(shape.quadrant, "shape")] == f"{shape.color} {shape.kind}"
    for box in scene.boxes:
        assert named[(box.quadrant, "box")] == box.color
    assert sum(v != "none" for v in named.values()) == 1 + len(scene.boxes)


def test_fast_slice_trains_both_arms_and_resumes(tmp_path):
    """A few steps of each stage for both arms; the results file pairs them question by question, and a rerun
    skips finished runs."""
    from inf_llava.synthetic.aspect_experiment import AspectRecipe, build_model, run_experiment

    recipe = AspectRecipe(
        vision_width=16,
        vision_layers=2,
        lm_width=32,
        lm_layers=1,
        train_images=6,
        validation_images=3,
        test_images=6,
        pretrain_steps=2,
        steps=2,
        batch_size=2,
    )
    fixed, _ = build_model(recipe, "fixed", 0)
    dynamic, processor = build_model(recipe, "dynamic", 0)
    for (name, a), (_, b) in zip(fixed.state_dict().items(), dynamic.state_dict().items()):
        assert torch.equal(a, b), name  # the same start for both arms
    assert processor.image_processor.is_dynamic
    results_path = tmp_path / "results.json"
    results = run_experiment(recipe, tmp_path / "work", results_path, seeds=(0,), jobs=1, progress=False)
    assert set(results["runs"]) == {"fixed/seed0", "dynamic/seed0"}
    for run in results["runs"].values():
        assert len(run["test"]["correct"]) == 6 and set(run["test"]["correct"]) <= {"0", "1"}
        assert run["pretrain_curve"] and run["curve"]
    before = results_path.read_text()
    run_experiment(recipe, tmp_path / "work", results_path, seeds=(0,), jobs=1, progress=False)
    assert results_path.read_text() == before


def _fake_results(fixed_rows, dynamic_rows, kinds, orientations):
    runs = {}
    for arm, rows in (("fixed", fixed_rows), ("dynamic", dynamic_rows)):
        for seed, row in enumerate(rows):
            correct = "".join(map(str, row))
            runs[f"{arm}/seed{seed}"] = {
                "arm": arm,
                "seed": seed,
                "validation": {"accuracy": 0.5},
                "test": {"accuracy": correct.count("1") / len(correct), "correct": correct},
                "pretrain_curve": [[1, 2.0], [2, 1.0]],
                "curve": [[1, 1.0], [2, 0.5]],
                "train_seconds": 1.0,
                "eval_seconds": 1.0,
            }
    recipe = asdict(AspectRecipe())
    questions = [{"id": str(i), "kind": k, "orientation": o} for i, (k, o) in enumerate(zip(kinds, orientations))]
    return {"recipe": recipe, "runs": runs, "test_questions": questions, "machine": "test CPU"}


def test_report_states_the_paired_difference_and_keeps_the_rest_of_the_page(tmp_path):
    from inf_llava.synthetic import aspect_report

    n = 60
    kinds = [KINDS[i % 3] for i in range(n)]
    orientations = ["wide" if i % 2 else "tall" for i in range(n)]
    fixed = [[1 if (kinds[i] == "global" or i % 4 == 0) else 0 for i in range(n)] for _ in range(5)]
    dynamic = [[1] * n for _ in range(5)]  # right everywhere: better on detail kinds, equal on global
    results = _fake_results(fixed, dynamic, kinds, orientations)
    analysis = aspect_report.analyse(results, samples=500)
    assert analysis["claims"]["detail"].holds and analysis["claims"]["overall"].holds
    assert analysis["claims"]["global"].verdict == "undecided" and analysis["claims"]["global"].effect == 0
    page = tmp_path / "dynamic-grids.md"
    page.write_text(f"# Dynamic DCM grids\n\nintro\n\n{aspect_report.BEGIN}\nold\n{aspect_report.END}\n\n## After\n")
    aspect_report.write(results, tmp_path, samples=300)
    text = page.read_text()
    assert text.startswith("# Dynamic DCM grids\n\nintro\n") and text.rstrip().endswith("## After")
    assert "\nold\n" not in text and text.count(aspect_report.BEGIN) == 1
    assert "| detail | " in text and "| holds |" in text and "seeds [0, 1, 2, 3, 4]" in text
    assert (tmp_path / aspect_report.FIGURE).stat().st_size > 0 and (tmp_path / aspect_report.CURVES).exists()


def test_report_needs_paired_seeds():
    from inf_llava.synthetic import aspect_report

    results = _fake_results([[1, 0, 1]], [], ["global", "detail", "detail"], ["wide", "tall", "wide"])
    with pytest.raises(ValueError, match="no seed has finished in both arms"):
        aspect_report.analyse(results)
