"""`inf-llava init`: a fresh INF-LLaVA from pretrained HF backbones saved locally (tiny, built here)."""

import json

import pytest
import torch
import train_fixtures as fixtures
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from train_fixtures import REPO, cli, weights
from transformers import (
    CLIPConfig,
    CLIPImageProcessor,
    CLIPModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
    SiglipImageProcessor,
    SiglipVisionConfig,
    SiglipVisionModel,
)

from inf_llava import InfLlavaForConditionalGeneration, InfLlavaProcessor
from inf_llava.presets import build_tiny_tokenizer
from inf_llava.training.assemble import assemble

caption_data = fixtures.caption_data
VISION = dict(
    hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4, image_size=24, patch_size=4
)


@pytest.fixture(scope="module")
def backbones(tmp_path_factory):
    """A full CLIP (vision + text towers, as openai/clip-* ships), a SigLIP vision model, a Llama with the tiny
    Llama-3-style tokenizer (no pad token) and a Qwen2 with tied embeddings and a ChatML tokenizer."""
    root = tmp_path_factory.mktemp("backbones")
    torch.manual_seed(0)
    text = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, vocab_size=99)
    CLIPModel(CLIPConfig(vision_config=VISION, text_config=text, projection_dim=16)).save_pretrained(root / "clip")
    CLIPImageProcessor().save_pretrained(root / "clip")
    SiglipVisionModel(SiglipVisionConfig(**VISION)).save_pretrained(root / "siglip")
    SiglipImageProcessor().save_pretrained(root / "siglip")
    llama_tokenizer = build_tiny_tokenizer()
    llama_tokenizer.pad_token = None
    llm = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
    LlamaForCausalLM(LlamaConfig(**llm, vocab_size=len(llama_tokenizer))).save_pretrained(root / "llama")
    llama_tokenizer.save_pretrained(root / "llama")
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=specials, show_progress=False)
    backend.train_from_iterator(["hello world, what is in the picture? a red circle."] * 4, trainer=trainer)
    qwen_tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>")
    qwen_vocab = len(qwen_tokenizer) + 2  # padded embedding rows, as Qwen checkpoints have
    Qwen2ForCausalLM(Qwen2Config(**llm, vocab_size=qwen_vocab, tie_word_embeddings=True)).save_pretrained(root / "qwen")
    qwen_tokenizer.save_pretrained(root / "qwen")
    return root


def _same(tensors: dict, prefix: str, reference: dict) -> int:
    """Count the reference tensors found, bit-identical, under ``prefix``; fail on any difference."""
    found = 0
    for name, tensor in reference.items():
        key = prefix + name
        if key in tensors:
            assert torch.equal(tensors[key], tensor), key
            found += 1
    return found


def test_clip_and_llama_keep_their_weights_exactly(backbones):
    model, processor, report = assemble(backbones / "clip", backbones / "llama", dem_num_heads=4, seed=3)
    state = model.state_dict()
    clip = weights(backbones / "clip")
    vision = {k.removeprefix("vision_model."): v for k, v in clip.items() if k.startswith("vision_model.")}
    # feature layer -2 of 3: the last encoder layer is not built; everything else is the backbone's, bit for bit
    loaded = _same(state, "model.image_encoder.vision_tower.", vision)
    assert loaded == report.vision_weights == len(vision) - 16  # 16 tensors per CLIP encoder layer
    llama = weights(backbones / "llama")
    assert _same(state, "model.language_model.", {k.removeprefix("model."): v for k, v in llama.items()}) == 20
    assert torch.equal(state["lm_head.weight"], llama["lm_head.weight"])
    assert len(report.initialised) == 24 and all(k.startswith("model.image_encoder.") for k in report.initialised)
    # Llama-3 tokens: the image slots reuse a reserved special token, the pad is the existing "<pad>": no resize.
    assert report.image_token == "<|reserved_special_token_0|>" and report.added_tokens == []
    assert report.template == "llama3" and processor.template == "llama3"
    assert model.config.text_config.vocab_size == len(processor.tokenizer) == llama["lm_head.weight"].shape[0]
    assert processor.image_processor.image_mean == pytest.approx([0.48145466, 0.4578275, 0.40821073])
    dem = model.model.image_encoder.dem.attention
    assert all(torch.equal(p.weight, dem.q_proj.weight) for p in (dem.k_proj, dem.v_proj, dem.o_proj))
    again, _, _ = assemble(backbones / "clip", backbones / "llama", dem_num_heads=4, seed=3)
    other, _, _ = assemble(backbones / "clip", backbones / "llama", dem_num_heads=4, seed=4)
    projector = "model.image_encoder.projector.0.weight"
    assert torch.equal(again.state_dict()[projector], state[projector])  # seeded
    assert not torch.equal(other.state_dict()[projector], state[projector])


def test_siglip_and_tied_qwen2_with_added_tokens(backbones):
    model, processor, report = assemble(backbones / "siglip", backbones / "qwen", dem_num_heads=4, grid=(2, 3))
    assert report.template == "chatml"
    assert report.added_tokens == ["<image>"] and report.pad_token == "<|endoftext|>"  # Qwen2's own pad
    qwen = weights(backbones / "qwen")
    old_rows = qwen["model.embed_tokens.weight"]
    embed = model.get_input_embeddings().weight
    # The checkpoint has 2 spare rows beyond its tokenizer, so the new token fits: no resize, rows kept.
    assert embed.shape[0] == old_rows.shape[0] and torch.equal(embed, old_rows)
    assert model.lm_head.weight.data_ptr() == embed.data_ptr()  # still tied
    siglip = weights(backbones / "siglip")
    vision = {k.removeprefix("vision_model."): v for k, v in siglip.items()}
    assert _same(model.state_dict(), "model.image_encoder.vision_tower.", vision) == report.vision_weights
    assert processor.image_processor.image_mean == [0.5, 0.5, 0.5]
    assert model.config.geometry.grid == (2, 3)
    assert processor.image_processor.size == {"height": 48, "width": 72}


def test_new_tokens_beyond_the_vocabulary_grow_it_with_mean_rows(backbones, tmp_path):
    tokenizer = PreTrainedTokenizerFast.from_pretrained(backbones / "qwen")
    for extra in range(3):
        tokenizer.add_tokens([f"<filler{extra}>"])  # use up the spare rows
    tokenizer.save_pretrained(tmp_path)
    qwen = Qwen2ForCausalLM.from_pretrained(backbones / "qwen")
    qwen.save_pretrained(tmp_path)
    old = qwen.get_input_embeddings().weight.detach().clone()
    model, processor, report = assemble(backbones / "siglip", tmp_path, dem_num_heads=4)
    embed = model.get_input_embeddings().weight
    # 55 tokens + 3 fillers + "<image>" = 59 > 57 rows: 2 new rows, each the mean of the old ones (official <pad>)
    assert embed.shape[0] == len(processor.tokenizer) == old.shape[0] + 2 == 59
    assert report.added_tokens == ["<image>"] and model.config.text_config.vocab_size == 59
    assert torch.equal(embed[: old.shape[0]], old)
    for row in embed[old.shape[0] :]:
        torch.testing.assert_close(row, old.mean(dim=0))
    assert model.lm_head.weight.data_ptr() == embed.data_ptr()


def test_not_a_vision_model_is_a_clear_error(backbones):
    with pytest.raises(ValueError, match="not a vision model"):
        assemble(backbones / "llama", backbones / "llama")


def test_cli_init_then_pretrain_from_the_yaml_recipe(backbones, caption_data, tmp_path):
    base = tmp_path / "base"
    done = cli("init", "--vision-tower", str(backbones / "clip"), "--llm", str(backbones / "llama"),
               "--output", str(base), "--dem-num-heads", "4")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "image token '<|reserved_special_token_0|>'" in done.stdout and "36 image tokens" in done.stdout
    stage1 = tmp_path / "stage1"
    done = cli(
        "train", "--config", str(REPO / "configs" / "pretrain.yaml"), "--model", str(base),
        "--data", str(caption_data), "--image-folder", str(caption_data.parent / "images"), "--output", str(stage1),
        "--max-steps", "2", "--batch-size", "2", "--grad-accum", "1", "--num-workers", "0",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "pretrain (NO): training dem" in done.stdout and "global batch 2 " in done.stdout
    saved = json.loads(json.dumps(__import__("yaml").safe_load((stage1 / "train_config.yaml").read_text())))
    assert saved["bf16"] is True and saved["gradient_checkpointing"] is True and saved["lr"] == 1e-3  # from YAML
    assert saved["batch_size"] == 2 and saved["max_steps"] == 2  # flags override it
    trained, clip = weights(stage1), weights(backbones / "clip")
    vision = {k.removeprefix("vision_model."): v for k, v in clip.items() if k.startswith("vision_model.")}
    assert _same(trained, "model.image_encoder.vision_tower.", vision) == len(vision) - 16
    llama = weights(backbones / "llama")
    assert _same(trained, "model.language_model.", {k.removeprefix("model."): v for k, v in llama.items()}) == 20
    assert (stage1 / "mm_projector.bin").is_file() and (stage1 / "loss.png").is_file()
    InfLlavaForConditionalGeneration.from_pretrained(stage1)
    InfLlavaProcessor.from_pretrained(stage1)


def test_cli_init_preset_and_errors(tmp_path, capsys):
    from inf_llava.cli import main

    assert main(["init", "--preset", "tiny", "--output", str(tmp_path / "tiny"), "--seed", "1"]) == 0
    assert InfLlavaForConditionalGeneration.from_pretrained(tmp_path / "tiny").config.tokens_per_image == 36
    capsys.readouterr()
    assert main(["init", "--preset", "tiny", "--output", str(tmp_path / "tiny")]) == 2
    assert (
        capsys.readouterr().err
        == f"error: {tmp_path / 'tiny'} is not empty; choose a new --output or pass --overwrite\n"
    )
    missing = ["init", "--vision-tower", str(tmp_path / "nope"), "--llm", str(tmp_path / "nope"), "--output", "x"]
    assert main(missing) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert main(["init", "--vision-tower", str(tmp_path), "--output", "x"]) == 2
    assert capsys.readouterr().err == "error: --vision-tower needs --llm\n"


def test_dynamic_grid_from_backbones_and_from_the_cli(backbones, tmp_path, capsys):
    from PIL import Image

    from inf_llava.cli import main

    model, processor, _ = assemble(
        backbones / "siglip", backbones / "qwen", dem_num_heads=4, grid="dynamic", max_views=4
    )
    assert model.config.geometry.grids == ((1, 1), (1, 2), (2, 1), (1, 3), (3, 1), (1, 4), (2, 2), (4, 1))
    assert processor.image_processor.grids == [list(g) for g in model.config.geometry.grids]
    assert processor.image_processor.size == {"height": 24, "width": 24}  # the view size; canvases vary per image
    inputs = processor.image_processor([Image.new("RGB", (96, 20)), Image.new("RGB", (30, 30))])
    assert inputs["image_grids"].tolist() == [[1, 4], [2, 2]]
    with torch.no_grad():
        assert model.get_image_features(inputs["pixel_values"], inputs["image_grids"]).shape == (2, 36, 64)

    out = tmp_path / "dyn"
    assert main(["init", "--preset", "tiny", "--grid", "dynamic", "--max-views", "4", "--output", str(out)]) == 0
    assert (
        "dynamic grid (8 candidates, at most 4 sub-images) of 24-px views, 36 image tokens" in capsys.readouterr().out
    )
    config = json.loads((out / "config.json").read_text())
    assert config["grid"] == "dynamic" and config["max_views"] == 4
    assert InfLlavaProcessor.from_pretrained(out).image_processor.grids[-1] == [4, 1]
    assert main(["init", "--preset", "tiny", "--grid", "3", "--max-views", "4", "--output", str(tmp_path / "x")]) == 2
    assert capsys.readouterr().err == "error: --max-views applies only with --grid dynamic\n"
