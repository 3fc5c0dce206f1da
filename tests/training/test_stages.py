import pytest
import torch
from torch import nn

from inf_llava.training.lora import apply_lora, check_qlora_available, llm_linear_names, lora_module_names
from inf_llava.training.optim import build_scheduler, no_decay_parameter_names, parameter_groups, warmup_steps
from inf_llava.training.stages import STAGES, apply_stage, get_stage, module_group


def _trainable_groups(model) -> set[str]:
    return {module_group(n) or "other" for n, p in model.named_parameters() if p.requires_grad}


def test_every_parameter_belongs_to_one_group(tiny_model):
    assert {module_group(n) for n, _ in tiny_model.named_parameters()} == {
        "vision_tower",
        "dem",
        "projector",
        "language_model",
    }


def test_pretrain_trains_dem_and_projector_only(tiny_model):
    counts = apply_stage(tiny_model, get_stage("pretrain"))
    assert _trainable_groups(tiny_model) == {"dem", "projector"}
    assert counts["vision_tower"] == counts["language_model"] == 0
    assert counts["dem"] == sum(p.numel() for p in tiny_model.model.image_encoder.dem.parameters())


def test_finetune_adds_the_whole_llm_and_keeps_the_tower_frozen(tiny_model):
    apply_stage(tiny_model, get_stage("finetune"))
    assert _trainable_groups(tiny_model) == {"dem", "projector", "language_model"}
    assert tiny_model.lm_head.weight.requires_grad
    assert tiny_model.get_input_embeddings().weight.requires_grad
    assert not any(p.requires_grad for p in tiny_model.model.image_encoder.vision_tower.parameters())
    apply_stage(tiny_model, get_stage("finetune"), unfreeze_vision_tower=True)
    assert all(p.requires_grad for p in tiny_model.model.image_encoder.vision_tower.parameters())


def test_stage_table_matches_the_official_recipe():
    assert STAGES["pretrain"].lr == 1e-3 and STAGES["pretrain"].template == "plain"
    assert STAGES["finetune"].lr == 2e-5 and STAGES["finetune"].template is None
    assert STAGES["pretrain"].export_adapter and not STAGES["finetune"].export_adapter
    with pytest.raises(ValueError, match="unknown stage 'sft'"):
        get_stage("sft")


def test_lora_targets_the_llm_only(tiny_model):
    # The pitfall: PEFT matches name suffixes, and the CLIP tower and the DEM have q_proj / k_proj / v_proj too.
    tower_and_dem = [
        n
        for n, m in tiny_model.named_modules()
        if isinstance(m, nn.Linear)
        and n.rsplit(".", 1)[-1] in {"q_proj", "k_proj", "v_proj"}
        and not n.startswith("model.language_model.")
    ]
    assert tower_and_dem, "the model must have same-named layers outside the LLM for this test to mean anything"
    expected = llm_linear_names(tiny_model)
    apply_lora(tiny_model, r=4, alpha=8, dropout=0.0)
    assert lora_module_names(tiny_model) == sorted(expected)
    assert len(expected) == 7 * tiny_model.config.text_config.num_hidden_layers
    assert not any(name.startswith("model.image_encoder") for name in lora_module_names(tiny_model))
    counts = apply_stage(tiny_model, get_stage("finetune"), lora=True)
    trainable_llm = [
        n for n, p in tiny_model.named_parameters() if p.requires_grad and module_group(n) == "language_model"
    ]
    assert trainable_llm and all(".lora_" in n for n in trainable_llm)
    assert counts["dem"] > 0 and counts["projector"] > 0 and counts["vision_tower"] == 0


def test_lora_in_pretrain_is_refused(tiny_model):
    with pytest.raises(ValueError, match="--lora adapts the LLM, which the pretrain stage keeps frozen"):
        apply_stage(tiny_model, get_stage("pretrain"), lora=True)


def test_qlora_needs_cuda_and_says_so_in_one_line():
    if torch.cuda.is_available():
        try:
            check_qlora_available()
        except ValueError as exc:
            assert str(exc) == "--qlora needs bitsandbytes: pip install bitsandbytes"
    else:
        with pytest.raises(ValueError) as info:
            check_qlora_available()
        assert str(info.value) == "--qlora needs a CUDA GPU (bitsandbytes 4-bit kernels); none is available, use --lora"


def test_no_weight_decay_on_norms_and_biases(tiny_model):
    apply_stage(tiny_model, get_stage("finetune"))
    skip = no_decay_parameter_names(tiny_model)
    assert "model.image_encoder.dem.norm.weight" in skip and "model.image_encoder.projector.0.bias" in skip
    assert "model.language_model.layers.0.input_layernorm.weight" in skip  # RMSNorm
    assert "model.language_model.norm.weight" in skip
    assert "model.language_model.layers.0.self_attn.q_proj.weight" not in skip
    decay, no_decay = parameter_groups(tiny_model, weight_decay=0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    grouped = {id(p) for g in (decay, no_decay) for p in g["params"]}
    assert grouped == {id(p) for p in tiny_model.parameters() if p.requires_grad}


def test_cosine_schedule_with_warmup_ratio():
    assert warmup_steps(0.03, 100) == 3 and warmup_steps(0.0, 100) == 0
    param = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([param], lr=1.0)
    scheduler = build_scheduler(optimizer, "cosine", 0.1, 20)
    lrs = []
    for _ in range(20):
        lrs.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == 0.0 and lrs[1] == 0.5 and lrs[2] == 1.0
    assert all(a >= b for a, b in zip(lrs[2:], lrs[3:])) and lrs[-1] < 0.01
    with pytest.raises(ValueError, match="unknown lr_scheduler"):
        build_scheduler(optimizer, "step", 0.1, 20)


def test_training_preprocessing_is_the_high_resolution_path(tiny_model, tiny_tokenizer):
    from conftest import random_image

    from inf_llava.presets import processor_for
    from inf_llava.training.trainer import training_image_processor

    base = processor_for(tiny_model.config, tiny_tokenizer, mode="base")  # an inference-path processor (24 px)
    pad = training_image_processor(base, "pad")
    square = training_image_processor(base, "square")
    size = tiny_model.config.geometry.high_res_size
    assert (pad.size["height"], pad.size["width"]) == size == (72, 72)
    wide = random_image(0, (90, 30))
    padded, cropped = pad([wide])["pixel_values"], square([wide])["pixel_values"]
    assert padded.shape == cropped.shape == (1, 3, *size)
    assert not torch.equal(padded, cropped)
    # "pad": the top rows are the mean colour, which normalises to about zero; "square" crops into the image
    assert padded[0, :, 0].abs().max() < 0.02 and cropped[0, :, 0].abs().max() > 0.5
    assert pad.image_mean == base.image_processor.image_mean
