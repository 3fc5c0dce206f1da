"""Dynamic grids through the training pipeline: dataset -> collation (tiles padded per batch, grids in order) ->
objective -> trainer -> saved model, on wide, tall and square images in the same batches."""

import pytest
import torch
import torch.nn.functional as F
from train_fixtures import run, train_config, weights

from inf_llava import InfLlavaForConditionalGeneration, InfLlavaProcessor
from inf_llava.data import LlavaDataset, TrainingCollator, load_records
from inf_llava.data.toy import make_toy_dataset
from inf_llava.presets import build_tiny
from inf_llava.processing.tokenization import IGNORE_INDEX
from inf_llava.training.objective import CausalLMObjective

SIZES = [(144, 60), (60, 144), (72, 72)]  # (width, height): grids 2x4, 4x2 and 3x3 with 24-px views


def _data(tmp_path, n=12, text_only_every=4):
    return make_toy_dataset(tmp_path / "data", n, kind="instruct", text_only_every=text_only_every, image_sizes=SIZES)


def _dynamic(tmp_path):
    model, processor = build_tiny(seed=0, grid="dynamic")
    path = tmp_path / "init"
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return model.eval(), processor, path


def test_collation_pads_tiles_and_keeps_grids_in_order(tmp_path):
    model, processor, _ = _dynamic(tmp_path)
    path = _data(tmp_path)
    samples, _ = load_records(path, path.parent / "images")
    dataset = LlavaDataset(samples, processor, "llama3")
    examples = [dataset[i] for i in range(4)]  # wide, tall, square, text-only
    grids = [e.image_grids.tolist() if e.image_grids is not None else None for e in examples]
    assert grids == [[[2, 4]], [[4, 2]], [[3, 3]], None]
    batch = TrainingCollator(processor.pad_token_id)(examples)
    assert batch.pixel_values.shape == (3, 9, 3, 24, 24)
    assert batch.image_grids.tolist() == [[2, 4], [4, 2], [3, 3]]
    for row, example in enumerate(examples[:3]):
        K = example.pixel_values.shape[1]
        assert torch.equal(batch.pixel_values[row, :K], example.pixel_values[0])
        assert not batch.pixel_values[row, K:].any()
    assert set(batch.model_inputs("cpu")) == {"input_ids", "attention_mask", "labels", "pixel_values", "image_grids"}

    def summed_loss(b):
        inputs = {k: v for k, v in b.model_inputs("cpu").items() if k != "labels"}
        logits = model(**inputs).logits
        return F.cross_entropy(
            logits[:, :-1].flatten(0, 1), b.labels[:, 1:].flatten(), ignore_index=IGNORE_INDEX, reduction="sum"
        )

    collate = TrainingCollator(processor.pad_token_id)
    with torch.no_grad():
        together = summed_loss(collate(examples))
        alone = sum(summed_loss(collate([e])) for e in examples)
        objective = CausalLMObjective(model)(**collate(examples).model_inputs("cpu"))
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(objective, together, rtol=1e-5, atol=1e-4)
    assert CausalLMObjective(model).blank_image_size == (24, 24)  # the first candidate grid, 1x1


def test_collation_refuses_to_mix_tiles_and_fixed_images(tmp_path, tiny_processor):
    _, processor, _ = _dynamic(tmp_path)
    path = _data(tmp_path, n=2, text_only_every=0)
    samples, _ = load_records(path, path.parent / "images")
    tiled = LlavaDataset(samples, processor, "llama3")[0]
    fixed = LlavaDataset(samples, tiny_processor, "llama3")[0]
    with pytest.raises(ValueError, match="mixes dynamic-grid tiles and fixed-grid images"):
        TrainingCollator(processor.pad_token_id)([tiled, fixed])


def test_trainer_runs_on_mixed_grids_and_saves_a_dynamic_model(tmp_path):
    _, _, init = _dynamic(tmp_path)
    data = _data(tmp_path)
    out = tmp_path / "trained"
    result = run(train_config(init, data, out, max_steps=3, batch_size=4, lr=5e-3, warmup_ratio=0.0))
    assert result.completed and result.global_step == 3
    before, after = weights(init), weights(out)
    moved = [k for k in before if not torch.equal(before[k], after[k])]
    assert any(".dem." in k for k in moved) and any(".language_model." in k for k in moved)
    assert not any("vision_tower" in k for k in moved)  # frozen in stage 2
    model = InfLlavaForConditionalGeneration.from_pretrained(out)
    processor = InfLlavaProcessor.from_pretrained(out)
    assert model.config.grid == "dynamic" and processor.image_processor.grids is not None
