"""The ablation pipeline end to end at toy scale: data, five variants, evaluation, report, shipping, demo."""

import json
import subprocess
import sys

import pytest

from inf_llava.synthetic import recipe as recipes
from inf_llava.synthetic import report
from inf_llava.synthetic.ship import best_run, ship

TOY = recipes.Recipe(
    vision_width=32,
    vision_layers=2,
    vision_heads=2,
    lm_width=32,
    lm_layers=1,
    lm_heads=2,
    train_images=12,
    validation_images=6,
    test_images=6,
    questions_per_image=2,
    steps=2,
    batch_size=4,
)


@pytest.fixture(scope="module")
def toy_results(tmp_path_factory):
    work = tmp_path_factory.mktemp("ablation")
    results = recipes.run_ablation(TOY, work, seeds=(0, 1), progress=False)
    return work, results


def test_every_variant_and_seed_is_trained_and_scored(toy_results):
    work, results = toy_results
    assert set(results["runs"]) == {f"{v}/seed{s}" for v in recipes.VARIANTS for s in (0, 1)}
    for run in results["runs"].values():
        assert run["test"]["n"] == 6 and set(run["test"]["per_kind"]) == {"global", "detail", "detail_in_context"}
        train_config = (work / run["variant"] / f"seed{run['seed']}" / "model" / "train_config.yaml").read_text()
        assert "unfreeze_vision_tower: true" in train_config and "max_steps: 2" in train_config
    # rerunning skips finished runs (same results object back)
    again = recipes.run_ablation(TOY, work, seeds=(0, 1), progress=False)
    assert again == results


def test_variants_build_the_right_encoders():
    tokenizer = recipes.build_tokenizer()
    for variant, expected_dem in (("low_res", False), ("local", False), ("add", False), ("inf_llava", True)):
        config = recipes.model_config(TOY, tokenizer, variant)
        model, _ = recipes.build_model(TOY, variant, 0)
        assert (model.image_encoder.dem is not None) == expected_dem, variant
        assert config.tokens_per_image == 36 and config.high_res_size == (72, 72)


def test_report_and_ship(toy_results, tmp_path):
    work, results = toy_results
    path = report.write(results, tmp_path / "docs", work / "data" / "test.json")
    text = path.read_text()
    for label in recipes.LABELS.values():
        assert label in text
    assert "| chance |" in text and (tmp_path / "docs" / "img" / "ablation.png").exists()
    summary = json.loads((tmp_path / "docs" / "ablation.json").read_text())["summary"]
    assert summary["inf_llava"]["overall"][2] == 2  # two seeds averaged
    model_dir = ship(results, work, tmp_path / "assets")
    assert (model_dir / "model.safetensors").exists() and "Test accuracy" in (model_dir / "README.md").read_text()
    assert best_run(results)["variant"] == "inf_llava"
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
    assert out.stdout.strip().endswith("on 6 held-out questions")
    assert (tmp_path / "demo.png").stat().st_size > 10_000
