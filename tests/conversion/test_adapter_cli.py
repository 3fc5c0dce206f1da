"""`inf-llava adapter import|export` with a stage-1 ``mm_projector.bin`` written like the released one (24 bf16
tensors in a torch pickle), including the INF-LLaVA-pretrain directory layout."""

import shutil

import torch
from conversion.official_fixture import checkpoint, converted

from inf_llava import InfLlavaForConditionalGeneration
from inf_llava.cli import main
from inf_llava.conversion.keys import dem_key_to_package


def released_adapter(path, scale: float = 2.0):
    """The fixture's projector + DEM, changed (so loading is visible), saved as the official stage-1 file."""
    weights = checkpoint("sharded").weights
    state = {
        k: (v.float() * scale).to(torch.bfloat16)
        for k, v in weights.items()
        if k.startswith(("model.mm_projector.", "model.spatial_embed."))
    }
    torch.save(state, path)
    return state


def test_import_into_a_model_then_export_gives_the_same_file(tmp_path, capsys):
    pretrain = tmp_path / "INF-LLaVA-pretrain"  # released stage-1 layout: config.json + mm_projector.bin
    pretrain.mkdir()
    shutil.copy(checkpoint("sharded").path / "config.json", pretrain)
    adapter = released_adapter(pretrain / "mm_projector.bin")
    assert len(adapter) == 24 and {t.dtype for t in adapter.values()} == {torch.bfloat16}
    output = tmp_path / "stage2-start"
    assert main(["adapter", "import", str(converted("sharded")), str(pretrain), str(output)]) == 0
    assert f"loaded {pretrain / 'mm_projector.bin'}" in capsys.readouterr().out
    model = InfLlavaForConditionalGeneration.from_pretrained(output, dtype="auto")
    base = InfLlavaForConditionalGeneration.from_pretrained(converted("sharded"), dtype="auto")
    encoder = model.model.image_encoder
    for key, value in adapter.items():
        if key.startswith("model.mm_projector."):
            ours = encoder.projector.state_dict()[key[len("model.mm_projector.") :]]
        else:
            ours = encoder.dem.state_dict()[dem_key_to_package(key[len("model.spatial_embed.") :])]
        assert torch.equal(ours, value), key
    assert torch.equal(model.lm_head.weight, base.lm_head.weight)  # only the adapter changed
    exported = tmp_path / "mm_projector.bin"
    assert main(["adapter", "export", str(output), str(exported)]) == 0
    again = torch.load(exported, weights_only=True)
    assert again.keys() == adapter.keys() and all(torch.equal(again[k], adapter[k]) for k in adapter)


def test_import_errors_are_one_line(tmp_path, capsys):
    torch.save({"model.mm_projector.0.weight": torch.zeros(2, 2)}, tmp_path / "mm_projector.bin")
    code = main(
        ["adapter", "import", str(converted("sharded")), str(tmp_path / "mm_projector.bin"), str(tmp_path / "o")]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "mm_projector.bin: mm_projector is missing ['0.bias', '2.bias', '2.weight']" in err
    assert main(["adapter", "import", str(converted("sharded")), str(tmp_path / "none"), str(tmp_path / "o")]) == 2
    assert "none: no such adapter file" in capsys.readouterr().err
