"""`inf-llava convert-official` on miniature checkpoints in the released layout (official_fixture.py): every tensor
accounted for, each layout gives the same model, the output loads with nothing else, options do what they say."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from conversion.official_fixture import (
    VISION_PREFIX,
    FixtureSpec,
    checkpoint,
    converted,
    loaded,
    planned,
    random_weights,
)
from safetensors import safe_open
from transformers import CLIPVisionModel

from inf_llava import InfLlavaConfig, InfLlavaForConditionalGeneration, InfLlavaProcessor
from inf_llava.cli import main
from inf_llava.conversion.convert import REPORT_NAME, plan_conversion
from inf_llava.errors import ModelLoadError

SPEC = FixtureSpec()
LLM_TENSORS = 3 + 9 * SPEC.text_layers  # embed, norm, lm_head + 9 per decoder layer
CLIP_LAYER_TENSORS = 16
TOWER_TENSORS = 7 + CLIP_LAYER_TENSORS * (SPEC.vision_layers - 1)  # embeddings 3, pre/post LayerNorms 4


def stored_tensors(directory: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a converted directory, read straight from its safetensors files."""
    index = directory / "model.safetensors.index.json"
    files = (
        sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.exists() else ["model.safetensors"]
    )
    out = {}
    for name in files:
        with safe_open(str(directory / name), framework="pt") as handle:
            out.update({key: handle.get_tensor(key) for key in handle.keys()})
    return out


def test_summary_accounts_for_every_tensor():
    fixture = checkpoint("sharded")
    plan = planned("sharded")
    assert sorted(t.info.name for t in plan.tensors) == sorted(fixture.weights)  # nothing skipped silently
    lines = plan.summary()
    assert lines[0].startswith(
        f"source: {fixture.path} (3 safetensors files, {len(fixture.weights)} tensors, bfloat16)"
    )
    assert f"mapped language model: {LLM_TENSORS} tensors" in lines
    assert f"mapped vision tower: {TOWER_TENSORS} tensors from the checkpoint" in lines
    assert "mapped DEM: 20 tensors" in lines and "mapped projector: 4 tensors" in lines
    assert (
        f"dropped on purpose (vision tower): {CLIP_LAYER_TENSORS} tensors: CLIP layers after the selected feature "
        f"layer (the tower is built with {SPEC.vision_layers - 1} layer)"
    ) in lines
    assert len(plan.kept) + len(plan.dropped) == len(fixture.weights)
    assert {t.info.name for t in plan.dropped} == {
        k for k in fixture.weights if k.startswith(f"{VISION_PREFIX}encoder.layers.{SPEC.vision_layers - 1}.")
    }
    assert any(line.startswith("image token: <|reserved_special_token_0|> (id 128002") for line in lines)
    assert any(
        f"vision config: inferred from the embedded weights ({SPEC.vision_layers} layers, width 128, 2 heads" in line
        for line in lines
    )


def test_tensors_land_where_the_official_code_uses_them():
    fixture = checkpoint("sharded")
    ours = stored_tensors(converted("sharded"))
    w = fixture.weights
    pairs = {
        "model.language_model.embed_tokens.weight": "model.embed_tokens.weight",
        "model.language_model.layers.1.self_attn.k_proj.weight": "model.layers.1.self_attn.k_proj.weight",
        "model.language_model.layers.0.mlp.down_proj.weight": "model.layers.0.mlp.down_proj.weight",
        "model.language_model.norm.weight": "model.norm.weight",
        "lm_head.weight": "lm_head.weight",
        "model.image_encoder.vision_tower.pre_layrnorm.bias": VISION_PREFIX + "pre_layrnorm.bias",
        "model.image_encoder.vision_tower.encoder.layers.0.mlp.fc2.weight": VISION_PREFIX
        + "encoder.layers.0.mlp.fc2.weight",
        "model.image_encoder.dem.attention.q_proj.weight": "model.spatial_embed.attention.linears.0.weight",
        "model.image_encoder.dem.attention.o_proj.bias": "model.spatial_embed.attention.linears.3.bias",
        "model.image_encoder.dem.attention.norm.weight": "model.spatial_embed.attention.ln.weight",
        "model.image_encoder.dem.ffn_local.2.weight": "model.spatial_embed.ffn_crop.2.weight",
        "model.image_encoder.dem.ffn_global.0.bias": "model.spatial_embed.ffn_stride.0.bias",
        "model.image_encoder.dem.norm.bias": "model.spatial_embed.ln_fuse.bias",
        "model.image_encoder.projector.2.weight": "model.mm_projector.2.weight",
    }
    for ours_key, official_key in pairs.items():
        assert torch.equal(ours[ours_key], w[official_key]), ours_key
    assert len(ours) == len(fixture.weights) - CLIP_LAYER_TENSORS
    assert all(t.dtype == torch.bfloat16 for t in ours.values())  # --dtype keep: the stored bf16


@pytest.mark.parametrize("variant", ["single", "bin", "bin_sharded"])
def test_every_layout_gives_the_same_model(variant):
    reference = stored_tensors(converted("sharded"))
    plan = plan_conversion(checkpoint(variant).path)
    assert plan.readers["checkpoint"].format == ("bin" if variant.startswith("bin") else "safetensors")
    state = plan.state_dict()
    assert state.keys() == reference.keys()
    assert all(torch.equal(state[k], reference[k]) for k in state)


def test_config_processor_and_generation_config():
    directory = converted("sharded")
    config = InfLlavaConfig.from_pretrained(directory)
    text = config.text_config
    assert (text.vocab_size, text.pad_token_id, text.bos_token_id, text.eos_token_id) == (
        128257,
        128256,
        128000,
        128009,
    )
    assert text.rope_parameters["rope_theta"] == 500000.0 and text.max_position_embeddings == 8192
    assert (text.num_key_value_heads, text.rms_norm_eps, text.tie_word_embeddings) == (2, 1e-5, False)
    assert (
        config.image_token_id == 128002 and config.vision_feature_layer == -2 and config.projector_type == "mlp2x_gelu"
    )
    assert config.geometry.grid == (3, 3) and config.tokens_per_image == 576 and config.high_res_size == (1008, 1008)
    assert config.vision_config.num_attention_heads == 2 and config.dem_num_heads == 8 and config.dem_ffn_ratio == 16
    assert config.dtype == torch.bfloat16
    generation = json.loads((directory / "generation_config.json").read_text())
    assert generation["eos_token_id"] == [128001, 128009] and generation["pad_token_id"] == 128256
    processor = loaded("sharded")[1]
    assert processor.image_processor.size == {"height": 1008, "width": 1008} and processor.image_processor.pad_to_square
    assert processor.template == "llama3" and processor.image_token_id == 128002 and processor.tokens_per_image == 576
    assert (
        len(processor.tokenizer) == 128257
        and processor.tokenizer.pad_token == "<pad>"
        and processor.pad_token_id == 128256
    )
    report = json.loads((directory / REPORT_NAME).read_text())
    assert report["files"] == ["model.safetensors"] and "mapped DEM: 20 tensors" in report["summary"]


def test_cli_with_separate_tower_sharded_output_and_nothing_else_needed(tmp_path, capsys):
    """The tower-less release layout: CLIP comes from mm_vision_tower's repository; afterwards the source and the
    CLIP repository are deleted and the output still loads and runs."""
    fixture = checkpoint("tower")
    source, clip = tmp_path / "src" / "INF-LLaVA-sft", tmp_path / "src" / "clip-vit"
    shutil.copytree(fixture.path, source)
    shutil.copytree(fixture.clip_path, clip)
    config = json.loads((source / "config.json").read_text())
    (source / "config.json").write_text(json.dumps({**config, "mm_vision_tower": str(clip)}))
    destination = tmp_path / "converted"
    assert main(["convert-official", str(source), str(destination), "--max-shard-size", "10MB"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert f"mapped vision tower: {TOWER_TENSORS} tensors from {clip}" in lines
    clip_text = (
        "dropped on purpose (vision tower): 23 tensors: CLIP text model and projection heads (not part of the tower)"
    )
    assert clip_text in lines
    assert "reading clip-vit/model.safetensors (0.00 GB)" in lines
    assert f"wrote {destination} (3 shards, 0.03 GB)" in lines, "\n".join(lines)
    index = json.loads((destination / "model.safetensors.index.json").read_text())
    assert sorted(set(index["weight_map"].values())) == [f"model-0000{i}-of-00003.safetensors" for i in range(1, 4)]
    stored = stored_tensors(destination)
    tower = stored["model.image_encoder.vision_tower.encoder.layers.0.self_attn.q_proj.weight"]
    assert tower.dtype == torch.float32  # the tower repository's own fp32 weights, kept
    assert torch.equal(tower, fixture.weights[VISION_PREFIX + "encoder.layers.0.self_attn.q_proj.weight"])
    shutil.rmtree(tmp_path / "src")
    model = InfLlavaForConditionalGeneration.from_pretrained(destination)
    processor = InfLlavaProcessor.from_pretrained(destination)
    prompt = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Hi"}]}], add_generation_prompt=True
    )
    from conftest import random_image

    inputs = processor(images=[random_image(0, (60, 40))], text=prompt, return_tensors="pt")
    with torch.no_grad():
        assert torch.isfinite(model(**inputs).logits).all()


def test_dtype_option_progress_and_existing_destination(tmp_path, capsys):
    plan = planned("sharded")
    lines: list[str] = []
    out = plan.save(tmp_path / "fp32", dtype=torch.float32, log=lines.append, progress=True)
    assert "converting: 100%" in capsys.readouterr().err
    assert {t.dtype for t in stored_tensors(out).values()} == {torch.float32}
    assert InfLlavaConfig.from_pretrained(out).dtype == torch.float32
    assert [line.split(" (")[0] for line in lines] == [
        "reading sharded/model-00001-of-00003.safetensors",
        "reading sharded/model-00002-of-00003.safetensors",
        "reading sharded/model-00003-of-00003.safetensors",
        f"wrote {out}",
    ]
    with pytest.raises(ModelLoadError, match="already exists and is not empty.*--overwrite"):
        plan.save(out)
    assert plan.save(out, overwrite=True, dtype=torch.float16, progress=False) == out
    assert "converting" not in capsys.readouterr().err
    assert {t.dtype for t in stored_tensors(out).values()} == {torch.float16}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no partial directory left behind
    with pytest.raises(ModelLoadError, match="must differ from the source"):
        plan.save(checkpoint("sharded").path, overwrite=True)


def test_hub_id_from_the_local_cache(tmp_path):
    """A hub id resolves through huggingface_hub (offline here: from its cache), for conversion and in memory."""
    repo = tmp_path / "hub" / "models--WeihuangLin--INF-LLaVA-sft"
    shutil.copytree(checkpoint("single").path, repo / "snapshots" / ("a" * 40))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    plan = plan_conversion("WeihuangLin/INF-LLaVA-sft", cache_dir=tmp_path / "hub")
    assert plan.source == repo / "snapshots" / ("a" * 40)
    model = InfLlavaForConditionalGeneration.from_pretrained("WeihuangLin/INF-LLaVA-sft", cache_dir=tmp_path / "hub")
    reference = stored_tensors(converted("sharded"))
    assert torch.equal(model.lm_head.weight, reference["lm_head.weight"].float())
    with pytest.raises(ModelLoadError, match="WeihuangLin/absent: not a local directory, and the hub repository"):
        plan_conversion("WeihuangLin/absent", cache_dir=tmp_path / "hub")


def test_vision_tower_option_with_a_transformers_5_vision_model(tmp_path):
    """--vision-tower pointing at a CLIPVisionModel saved by transformers 5 (keys without ``vision_model.``)."""
    fixture = checkpoint("tower")
    _, vision = random_weights(SPEC, fixture.config["vocab_size"])
    tower = CLIPVisionModel(SPEC.vision_config())
    tower.load_state_dict(vision)
    tower.save_pretrained(tmp_path / "clip-vision")
    plan = plan_conversion(fixture.path, vision_tower=str(tmp_path / "clip-vision"))
    assert f"vision config: {tmp_path / 'clip-vision'}" in plan.summary()
    assert f"mapped vision tower: {TOWER_TENSORS} tensors from {tmp_path / 'clip-vision'}" in plan.summary()
    reference = stored_tensors(converted("tower"))
    state = plan.state_dict()
    assert state.keys() == reference.keys() and all(torch.equal(state[k], reference[k]) for k in state)
    with pytest.raises(ModelLoadError, match=r"vision tower: .*absent: no such vision tower directory"):
        plan_conversion(checkpoint("single").path, vision_tower=str(tmp_path / "absent"))
