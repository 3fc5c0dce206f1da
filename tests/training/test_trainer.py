"""In-process training runs on the tiny preset and a generated LLaVA-format dataset."""

import json
from collections import Counter

import pytest
import torch
import train_fixtures as fixtures
from PIL import Image
from train_fixtures import group_of, run, train_config, weights

from inf_llava import InfLlavaForConditionalGeneration, InfLlavaProcessor
from inf_llava.conversion.adapter import load_official_adapter
from inf_llava.errors import DataError
from inf_llava.training.checkpoint import list_checkpoints, read_state

tiny_model_dir = fixtures.tiny_model_dir
caption_data = fixtures.caption_data
instruct_data = fixtures.instruct_data


def _changed_groups(before: dict, after: dict) -> Counter:
    assert before.keys() == after.keys()
    return Counter(group_of(k) for k in before if not torch.equal(before[k], after[k]))


def test_pretrain_changes_only_dem_and_projector(tiny_model_dir, caption_data, tmp_path):
    out = tmp_path / "stage1"
    result = run(train_config(tiny_model_dir, caption_data, out, stage="pretrain", max_steps=3))
    assert result.completed and result.global_step == 3
    assert result.trainable_parameters["vision_tower"] == result.trainable_parameters["language_model"] == 0
    init, trained = weights(tiny_model_dir), weights(out)
    changed = _changed_groups(init, trained)
    assert set(changed) == {"dem", "projector"}
    assert changed["projector"] == 4 and changed["dem"] == 20  # every DEM / projector tensor moved
    # The output directory is a complete model + processor.
    model = InfLlavaForConditionalGeneration.from_pretrained(out)
    processor = InfLlavaProcessor.from_pretrained(out)
    assert processor.template == "llama3"  # stage 1 trains with "plain" but keeps the chat template for stage 2
    assert model.config.image_token_id == processor.image_token_id
    # mm_projector.bin in the official layout holds the trained DEM + projector (bf16, as released).
    other = InfLlavaForConditionalGeneration.from_pretrained(tiny_model_dir)
    load_official_adapter(other, out / "mm_projector.bin")
    for name, tensor in other.state_dict().items():
        if group_of(name) in ("dem", "projector"):
            assert torch.equal(tensor, trained[name].to(torch.bfloat16).float()), name
    # Logs.
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [1, 2, 3] and all(row["loss"] > 0 for row in rows)
    with Image.open(out / "loss.png") as png:
        assert png.format == "PNG" and png.size[0] > 300
    assert (out / "train_config.yaml").read_text().startswith("stage: pretrain\n")
    assert (out / "skipped.jsonl").read_text() == ""


def test_finetune_changes_the_llm_not_the_vision_tower_and_learns(tiny_model_dir, instruct_data, tmp_path):
    out = tmp_path / "stage2"
    config = train_config(tiny_model_dir, instruct_data, out, max_steps=12, lr=5e-3, warmup_ratio=0.0)
    result = run(config)
    init, trained = weights(tiny_model_dir), weights(out)
    changed = _changed_groups(init, trained)
    assert set(changed) == {"dem", "projector", "language_model"}
    assert changed["language_model"] == sum(1 for k in init if group_of(k) == "language_model")
    losses = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 12
    # The toy answers are determined by the images: a learnable set. Mean of the last 3 steps vs the first 3.
    assert sum(losses[-3:]) / 3 < 0.7 * sum(losses[:3]) / 3, losses
    assert result.last_loss == losses[-1]
    assert not (out / "mm_projector.bin").exists()


def test_resume_continues_to_the_same_weights(tiny_model_dir, instruct_data, tmp_path):
    """Stop after 3 of 6 steps (checkpoints every 2), resume from the newest checkpoint: bit-identical result, and
    every step logged exactly once."""
    settings = dict(max_steps=6, save_steps=2, lr=1e-3, grad_accum=2, batch_size=2)
    full = tmp_path / "full"
    run(train_config(tiny_model_dir, instruct_data, full, **settings))
    part = tmp_path / "part"
    stopped = run(train_config(tiny_model_dir, instruct_data, part, **settings), stop_after=3)
    assert not stopped.completed and stopped.global_step == 3
    assert [step for step, _ in list_checkpoints(part)] == [2, 3]
    assert read_state(part / "checkpoint-3")["global_step"] == 3
    # A checkpoint holds only the trainable weights (not the frozen vision tower).
    saved = weights(part / "checkpoint-3")  # names under the training objective, which holds the model as `model`
    assert {group_of(k.removeprefix("model.")) for k in saved} == {"dem", "projector", "language_model"}
    resumed = run(train_config(tiny_model_dir, instruct_data, part, resume_from="latest", **settings))
    assert resumed.completed and resumed.global_step == 6
    a, b = weights(full), weights(part)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    steps = [json.loads(line)["step"] for line in (part / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 7))
    full_losses = [json.loads(line)["loss"] for line in (full / "metrics.jsonl").read_text().splitlines()]
    part_losses = [json.loads(line)["loss"] for line in (part / "metrics.jsonl").read_text().splitlines()]
    assert full_losses == part_losses


def test_resume_refuses_a_different_data_order(tiny_model_dir, instruct_data, tmp_path):
    out = tmp_path / "run"
    run(train_config(tiny_model_dir, instruct_data, out, max_steps=4, save_steps=2), stop_after=2)
    with pytest.raises(ValueError, match="cannot resume: global_batch was 4 and is now 2"):
        run(train_config(tiny_model_dir, instruct_data, out, max_steps=4, batch_size=2, resume_from="latest"))
    with pytest.raises(ValueError, match="already holds a training run .*checkpoint-2.*--resume-from latest"):
        run(train_config(tiny_model_dir, instruct_data, out, max_steps=4))


def test_accumulation_equals_a_bigger_batch(tiny_model_dir, instruct_data, tmp_path):
    """Loss normalised by the global batch's supervised tokens: 2 x 2 accumulated == 4 at once."""
    run(train_config(tiny_model_dir, instruct_data, tmp_path / "big", batch_size=4, lr=1e-3))
    run(train_config(tiny_model_dir, instruct_data, tmp_path / "acc", batch_size=2, grad_accum=2, lr=1e-3))
    a, b = weights(tmp_path / "big"), weights(tmp_path / "acc")
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6)


def test_gradient_checkpointing_and_bf16_run(tiny_model_dir, instruct_data, tmp_path):
    run(train_config(tiny_model_dir, instruct_data, tmp_path / "plain", lr=1e-3, max_steps=2))
    run(
        train_config(
            tiny_model_dir, instruct_data, tmp_path / "ckpt", lr=1e-3, max_steps=2, gradient_checkpointing=True
        )
    )
    a, b = weights(tmp_path / "plain"), weights(tmp_path / "ckpt")
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6)
    result = run(train_config(tiny_model_dir, instruct_data, tmp_path / "bf16", lr=1e-3, max_steps=2, bf16=True))
    assert result.completed and torch.isfinite(torch.tensor(result.last_loss))
    assert all(t.dtype == torch.float32 for t in weights(tmp_path / "bf16").values())  # autocast, fp32 weights


def test_group_by_modality_length_run(tiny_model_dir, instruct_data, tmp_path):
    result = run(
        train_config(tiny_model_dir, instruct_data, tmp_path / "grouped", group_by_modality_length=True, max_steps=6)
    )
    assert result.completed


def test_lora_finetune_merges_into_a_loadable_model(tiny_model_dir, instruct_data, tmp_path):
    out = tmp_path / "lora"
    result = run(train_config(tiny_model_dir, instruct_data, out, lora=True, lora_r=4, lora_alpha=8, lr=1e-2))
    assert result.trainable_parameters["language_model"] == sum(
        4 * (i + o) for i, o in _llm_linear_shapes(tiny_model_dir)
    )
    init, merged = weights(tiny_model_dir), weights(out)
    assert init.keys() == merged.keys()  # merged back: no LoRA keys, a plain model
    changed = _changed_groups(init, merged)
    assert set(changed) == {"dem", "projector", "language_model"} and "vision_tower" not in changed
    assert not any(k.startswith("lm_head") or "embed_tokens" in k for k in init if not torch.equal(init[k], merged[k]))
    adapter = json.loads((out / "lora_adapter" / "adapter_config.json").read_text())
    assert all(t.startswith("model.language_model.") for t in adapter["target_modules"])
    InfLlavaForConditionalGeneration.from_pretrained(out)


def _llm_linear_shapes(model_dir):
    model = InfLlavaForConditionalGeneration.from_pretrained(model_dir)
    return [
        (m.in_features, m.out_features)
        for n, m in model.named_modules()
        if n.startswith("model.language_model.") and isinstance(m, torch.nn.Linear)
    ]


def test_invalid_rows_stop_the_run_or_are_skipped_and_listed(tiny_model_dir, instruct_data, tmp_path):
    rows = instruct_data.read_text().splitlines()
    bad = json.loads(rows[0]) | {"id": "no-such-image", "image": "missing.png"}
    corrupt = json.loads(rows[1]) | {"id": "corrupt", "image": "corrupt.png"}
    (instruct_data.parent / "images" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    data = tmp_path / "data.jsonl"
    data.write_text("\n".join([*rows, json.dumps(bad), json.dumps(corrupt)]) + "\n")
    with pytest.raises(DataError) as info:
        run(train_config(tiny_model_dir, data, tmp_path / "stop", image_folder=str(instruct_data.parent / "images")))
    assert str(info.value).startswith(f"{data} line {len(rows) + 1} (sample 'no-such-image'): image file not found")
    out = tmp_path / "skip"
    result = run(
        train_config(
            tiny_model_dir,
            data,
            out,
            image_folder=str(instruct_data.parent / "images"),
            skip_invalid=True,
            max_steps=None,
            epochs=1,
        )
    )
    assert result.completed
    # The missing file is caught while reading the data, the corrupt one when its batch is built: both listed.
    skipped = [json.loads(line) for line in (out / "skipped.jsonl").read_text().splitlines()]
    assert [row["id"] for row in skipped] == ["no-such-image", "corrupt"]
    assert "image file not found" in skipped[0]["reason"] and "corrupt.png" in skipped[1]["reason"]
    assert [r.sample_id for r in result.skipped] == ["no-such-image", "corrupt"]
    samples = sum(json.loads(line)["samples"] for line in (out / "metrics.jsonl").read_text().splitlines())
    assert samples == len(rows) + 1 - 1  # every valid sample once; the corrupt one left out, not repeated


def test_verify_data_finds_fetch_time_problems_before_training(tiny_model_dir, instruct_data, tmp_path):
    rows = instruct_data.read_text().splitlines()
    (instruct_data.parent / "images" / "corrupt2.png").write_bytes(b"not an image at all")
    data = tmp_path / "data.jsonl"
    data.write_text("\n".join([*rows, json.dumps(json.loads(rows[0]) | {"id": "c2", "image": "corrupt2.png"})]) + "\n")
    images = str(instruct_data.parent / "images")
    with pytest.raises(DataError, match=r"line 23 \(sample 'c2'\): .*corrupt2.png: not a recognised image format"):
        run(train_config(tiny_model_dir, data, tmp_path / "v", image_folder=images, verify_data=True))
    out = tmp_path / "v2"
    result = run(train_config(tiny_model_dir, data, out, image_folder=images, verify_data=True, skip_invalid=True))
    assert [r.sample_id for r in result.skipped] == ["c2"]
    assert "c2" in (out / "skipped.jsonl").read_text()


def test_a_corrupt_image_met_in_a_worker_stops_with_a_clean_one_line_error(tiny_model_dir, instruct_data, tmp_path):
    rows = instruct_data.read_text().splitlines()
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "bad.png").write_bytes(b"GIF89a but truncated")
    for name in ("toy-00000.png", "toy-00001.png"):
        (tmp_path / "images" / name).write_bytes((instruct_data.parent / "images" / name).read_bytes())
    bad = json.loads(rows[1]) | {"id": "bad-gif", "image": "bad.png"}
    data = tmp_path / "data.jsonl"
    data.write_text("\n".join([rows[0], json.dumps(bad), rows[1]]) + "\n")
    config = train_config(tiny_model_dir, data, tmp_path / "out", image_folder=str(tmp_path / "images"), num_workers=1)
    with pytest.raises(DataError) as info:
        run(config)
    message = str(info.value)
    # Found inside a DataLoader worker, reported by the main process: no worker traceback in the message.
    assert message == (
        f"{data} line 2 (sample 'bad-gif'): {tmp_path / 'images' / 'bad.png'}: not a recognised image format "
        "(--skip-invalid would leave it out)"
    )


def test_resume_latest_without_checkpoints(tiny_model_dir, instruct_data, tmp_path):
    fresh = run(train_config(tiny_model_dir, instruct_data, tmp_path / "new", max_steps=1, resume_from="latest"))
    assert fresh.completed and fresh.global_step == 1  # nothing to resume yet: starts from step 0
    with pytest.raises(ValueError, match="holds a finished run without checkpoints; nothing to resume"):
        run(train_config(tiny_model_dir, instruct_data, tmp_path / "new", max_steps=1, resume_from="latest"))
