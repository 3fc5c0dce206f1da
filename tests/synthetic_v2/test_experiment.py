"""The ablation grid end to end at toy scale (the fast slice of ``make ablation``): shared tower, both stages with
validation-based stopping, resumable results, the report, shipping and the demo on the shipped model."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict

import pytest
import torch
from safetensors.torch import load_file

from inf_llava.synthetic.ship import best_run, ship
from inf_llava.synthetic.v2 import experiment, report
from inf_llava.synthetic.v2.experiment import AblationRecipe, recipe_dir, run_experiment
from inf_llava.synthetic.v2.task import KINDS

TOY = AblationRecipe(
    vision_width=32,
    vision_layers=2,
    vision_heads=2,
    lm_width=32,
    lm_layers=1,
    lm_heads=2,
    train_images=20,
    validation_images=10,
    test_images=15,
    questions_per_image=3,
    tower_steps=3,
    tower_batch_size=4,
    pretrain_steps=3,
    pretrain_batch_size=4,
    steps=6,
    batch_size=4,
    eval_every=2,
    patience=1,
)
VARIANTS = ("inf_llava", "low_res")


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    work = tmp_path_factory.mktemp("ablation")
    results = run_experiment(TOY, work, work / "ablation.json", VARIANTS, seeds=(0, 1), jobs=1, progress=False)
    return work, results


def test_every_run_is_trained_validated_and_scored(grid):
    work, results = grid
    assert set(results["runs"]) == {f"{v}/seed{s}" for v in VARIANTS for s in (0, 1)}
    assert [q["kind"] for q in results["test_questions"]] == [KINDS[i % len(KINDS)] for i in range(15)]
    for run in results["runs"].values():
        assert run["test"]["n"] == 15 and len(run["test"]["correct"]) == 15
        steps = [step for step, _ in run["validation_history"]]
        assert steps == list(range(2, 2 * len(steps) + 1, 2)) and steps[-1] <= TOY.steps
        best = max(run["validation_history"], key=lambda row: row[1])
        assert run["best_step"] == best[0]  # the first of the best
        # stopping rule: it ran to the end, or stopped `patience` evaluations after its best
        assert steps[-1] == TOY.steps or steps[-1] - run["best_step"] == TOY.patience * TOY.eval_every
        assert run["validation"]["accuracy"] == pytest.approx(best[1])
        assert run["tower_curve"] and run["pretrain_curve"] and run["curve"]


def test_rerunning_skips_finished_runs(grid):
    work, results = grid
    again = run_experiment(TOY, work, work / "ablation.json", VARIANTS, seeds=(0, 1), jobs=1, progress=False)
    assert again == results
    stored = json.loads((work / "ablation.json").read_text())
    assert stored["recipe"] == asdict(TOY) and set(stored["runs"]) == set(results["runs"])


def test_variants_share_the_seeds_frozen_tower(grid):
    work, _ = grid
    root = recipe_dir(work, TOY)
    tower = load_file(str(root / "towers" / "seed0" / "tower.safetensors"))
    for variant in VARIANTS:
        for stage in ("init", "model"):
            state = load_file(str(root / variant / "seed0" / stage / "model.safetensors"))
            prefix = "model.image_encoder.vision_tower."
            kept = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
            assert kept.keys() == tower.keys()
            assert all(torch.equal(kept[k], tower[k]) for k in tower), (variant, stage)


def test_same_seed_same_initial_weights_outside_the_high_resolution_branch():
    a, _ = experiment.build_model(TOY, "inf_llava", 3)
    b, _ = experiment.build_model(TOY, "dcm_add", 3)
    sa, sb = a.state_dict(), b.state_dict()
    shared = [k for k in sa if "language_model" in k or "vision_tower" in k]
    assert shared and all(torch.equal(sa[k], sb[k]) for k in shared)


def test_report_and_ship_and_demo(grid, tmp_path):
    work, results = grid
    page = report.write(results, tmp_path / "docs", samples=500)
    text = page.read_text()
    assert "high resolution (INF-LLaVA) beats the low-resolution view alone" in text
    assert "| `inf_llava` | 2 |" in text and "| `low_res` | 2 |" in text
    assert "not enough paired seeds yet" in text  # the variants this toy grid did not run
    for figure in (report.FIGURE, report.CURVES, report.TASK_FIGURE):
        assert (tmp_path / "docs" / figure).stat().st_size > 1_000
    model_dir = ship(results, work, tmp_path / "assets")
    card = (model_dir / "README.md").read_text()
    assert f"step {best_run(results)['best_step']}" in card and "| `low_res` |" in card
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "inf_llava",
            "demo",
            "--model",
            str(model_dir),
            "--assets",
            str(tmp_path / "assets"),
            "--figure",
            str(tmp_path / "demo.png"),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1].startswith("demo accuracy: ")
    assert out.stdout.strip().endswith("on 15 held-out questions")
