import pytest
import torch

from inf_llava.conversion.adapter import load_official_adapter, save_official_adapter
from inf_llava.errors import ModelLoadError
from inf_llava.presets import build_tiny


def test_adapter_round_trip_in_official_layout(tmp_path):
    model, _ = build_tiny(seed=1)
    path = save_official_adapter(model, tmp_path / "mm_projector.bin")
    state = torch.load(path, weights_only=True)
    assert len(state) == 24
    assert {k for k in state if k.startswith("model.mm_projector.")} == {
        "model.mm_projector.0.weight",
        "model.mm_projector.0.bias",
        "model.mm_projector.2.weight",
        "model.mm_projector.2.bias",
    }
    assert "model.spatial_embed.attention.linears.3.weight" in state and "model.spatial_embed.ln_fuse.bias" in state
    assert all(t.dtype == torch.bfloat16 for t in state.values())
    other, _ = build_tiny(seed=2)
    load_official_adapter(other, path)
    for a, b in (
        (model.image_encoder.dem, other.image_encoder.dem),
        (model.image_encoder.projector, other.image_encoder.projector),
    ):
        for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
            assert torch.equal(x.to(torch.bfloat16).float(), y), name


def test_adapter_errors(tmp_path):
    model, _ = build_tiny()
    torch.save({"model.mm_projector.0.weight": torch.zeros(3)}, tmp_path / "bad.bin")
    with pytest.raises(ModelLoadError, match="missing"):
        load_official_adapter(model, tmp_path / "bad.bin")
    torch.save({"model.foo": torch.zeros(3)}, tmp_path / "bad2.bin")
    with pytest.raises(ModelLoadError, match="unexpected keys"):
        load_official_adapter(model, tmp_path / "bad2.bin")
    with pytest.raises(ModelLoadError, match="no such adapter file"):
        load_official_adapter(model, tmp_path / "nope.bin")
