"""Broken and hostile checkpoints: each stops the conversion with one line naming the file and the key (and the CLI
prints just that line, exit status 2); nothing is written."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from conversion.official_fixture import checkpoint
from safetensors.torch import load_file, save_file

from inf_llava.cli import main
from inf_llava.conversion.convert import plan_conversion
from inf_llava.errors import ModelLoadError


def broken_copy(tmp_path: Path, edit_weights=None, edit_config=None, variant: str = "single") -> Path:
    """A copy of a released-layout checkpoint with its weights and/or config.json edited."""
    source = tmp_path / "INF-LLaVA-sft"
    shutil.copytree(checkpoint(variant).path, source)
    if edit_weights is not None:
        weights = load_file(source / "model.safetensors")
        edit_weights(weights)
        save_file(weights, str(source / "model.safetensors"), metadata={"format": "pt"})
    if edit_config is not None:
        config = json.loads((source / "config.json").read_text())
        edit_config(config)
        (source / "config.json").write_text(json.dumps(config))
    return source


def expect_error(source: Path, pattern: str, capsys=None, **kwargs) -> None:
    with pytest.raises(ModelLoadError, match=pattern) as info:
        plan_conversion(source, **kwargs)
    assert "\n" not in str(info.value)
    if capsys is not None:  # the CLI: the same single line, status 2, no traceback, no output directory
        destination = source.parent / "out"
        assert main(["convert-official", str(source), str(destination)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
        assert not destination.exists()


def test_missing_tensor(tmp_path, capsys):
    source = broken_copy(tmp_path, lambda w: w.pop("model.spatial_embed.ln_fuse.bias"))
    expect_error(source, r"INF-LLaVA-sft: the checkpoint is missing 'model.spatial_embed.ln_fuse.bias'$", capsys)


def test_unexpected_tensors(tmp_path, capsys):
    source = broken_copy(tmp_path, lambda w: w.update({"model.image_newline": torch.zeros(64)}))
    expect_error(source, r"model.safetensors: unexpected tensor 'model.image_newline': not part of a released", capsys)
    deeper = broken_copy(
        tmp_path / "deeper", lambda w: w.update({"model.layers.7.mlp.up_proj.weight": torch.zeros(2, 2)})
    )
    expect_error(deeper, r"model.safetensors: unexpected tensor 'model.layers.7.mlp.up_proj.weight': the converted")


def test_wrong_shape(tmp_path, capsys):
    def edit(weights):
        weights["model.mm_projector.0.weight"] = torch.zeros(64, 100, dtype=torch.bfloat16)

    source = broken_copy(tmp_path, edit)
    expect_error(
        source,
        r"model.safetensors: 'model.mm_projector.0.weight' has shape \[64, 100\], but config.json and the vision "
        r"tower config make it \[64, 128\]$",
        capsys,
    )


def test_pickle_with_non_tensor_globals_is_refused_and_never_executed(tmp_path, capsys):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    source = broken_copy(tmp_path, variant="bin")
    state = torch.load(source / "pytorch_model.bin", weights_only=True)
    state["model.mm_projector.0.weight"] = Payload()
    torch.save(state, source / "pytorch_model.bin")
    expect_error(
        source, r"pytorch_model.bin: refused to load: not a plain tensor pickle \(Unsupported global: GLOBAL", capsys
    )
    assert not marker.exists()


def test_missing_vision_tower(tmp_path, capsys):
    source = broken_copy(
        tmp_path,
        lambda w: [w.pop(k) for k in list(w) if k.startswith("model.vision_tower.")],
        lambda c: c.update(mm_vision_tower=str(tmp_path / "no-clip-here")),
    )
    expect_error(source, r"vision tower: .*no-clip-here: no such vision tower directory .*pass --vision-tower", capsys)
    cached_only = broken_copy(
        tmp_path / "hub",
        lambda w: [w.pop(k) for k in list(w) if k.startswith("model.vision_tower.")],
    )  # mm_vision_tower is the hub CLIP, unavailable offline
    expect_error(cached_only, r"openai/clip-vit-large-patch14-336: not a local directory, and the hub repository")
    with pytest.raises(ModelLoadError, match="embeds no vision tower weights"):
        plan_conversion(cached_only, vision_weights="checkpoint")


def test_broken_files(tmp_path, capsys):
    source = broken_copy(tmp_path, variant="sharded")
    index = json.loads((source / "model.safetensors.index.json").read_text())
    (source / "model-00002-of-00003.safetensors").unlink()
    expect_error(source, r"model.safetensors.index.json: lists the shard 'model-00002-of-00003.safetensors'", capsys)
    truncated = broken_copy(tmp_path / "truncated")
    data = (truncated / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(data[:1000])
    expect_error(truncated, r"model.safetensors: not a readable safetensors file")
    moved = broken_copy(tmp_path / "moved", variant="sharded")
    index["weight_map"]["lm_head.weight"] = "model-00001-of-00003.safetensors"
    (moved / "model.safetensors.index.json").write_text(json.dumps(index))
    expect_error(moved, r"model-00003-of-00003.safetensors: holds tensor 'lm_head.weight' but the index lists it in")


def test_not_an_original_checkpoint(tmp_path, capsys):
    llama = broken_copy(tmp_path, edit_config=lambda c: c.update(model_type="llama"))
    expect_error(llama, r"config.json: model_type is 'llama', not an official INF-LLaVA checkpoint", capsys)
    pretrain = tmp_path / "INF-LLaVA-pretrain"  # the released stage-1 layout: config + adapter only
    pretrain.mkdir()
    shutil.copy(checkpoint("single").path / "config.json", pretrain)
    torch.save({}, pretrain / "mm_projector.bin")
    expect_error(pretrain, r"no model weights .*stage-1 mm_projector.bin: use `inf-llava adapter import`")
    no_tokenizer = broken_copy(tmp_path / "tok")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (no_tokenizer / name).unlink()
    expect_error(no_tokenizer, r"INF-LLaVA-sft: no tokenizer")
    start_end = broken_copy(tmp_path / "se", edit_config=lambda c: c.update(mm_use_im_start_end=True))
    expect_error(start_end, r"mm_use_im_start_end / mm_use_im_patch_token are not supported")
    with pytest.raises(ModelLoadError, match="no such checkpoint directory"):
        plan_conversion(tmp_path / "absent")
