"""Slow checks (``make test-slow``): the official widths end to end, and the memory bound of streaming conversion."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import random_image
from conversion.official_fixture import FixtureSpec, write_official_checkpoint
from reference.official_llava import OfficialLlava, official_pixels, tokenizer_image_token

from inf_llava import InfLlavaForConditionalGeneration, InfLlavaProcessor
from inf_llava.conversion.convert import plan_conversion

TESTS = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_official_widths_match_the_official_forward(tmp_path):
    """CLIP-L's width and heads (1024, 16) and the official DEM (1024 wide, 8 heads, 1024 -> 64 -> 512 FFNs) on the
    released geometry, with the head count read off the shapes (mm_vision_tower is the unavailable hub CLIP)."""
    spec = FixtureSpec(vision_width=1024, vision_heads=16, vision_layers=2, text_width=128, text_intermediate=256)
    fixture = write_official_checkpoint(tmp_path / "sft", layout="sharded", spec=spec)
    destination = plan_conversion(fixture.path).save(tmp_path / "converted")
    config = json.loads((destination / "config.json").read_text())
    assert config["vision_config"]["num_attention_heads"] == 16 and config["dem_ffn_ratio"] == 16
    model = InfLlavaForConditionalGeneration.from_pretrained(destination)
    processor = InfLlavaProcessor.from_pretrained(destination)
    reference = OfficialLlava(fixture.weights, fixture.config, spec.vision_config())
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is this?"}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    image = random_image(21, (800, 600))
    inputs = processor(images=[image], text=prompt, return_tensors="pt")
    pixels = official_pixels(image, scale=3)
    assert (inputs["pixel_values"] - pixels).abs().max().item() <= 1e-6
    with torch.no_grad():
        outputs = model(**inputs)
    expected_features = reference.encode_images(pixels)
    error = (outputs.image_features - expected_features).abs().max() / expected_features.abs().max()
    assert error.item() <= 1e-4
    ids = tokenizer_image_token(prompt, processor.tokenizer)
    expected_logits = reference.logits(ids, expected_features)
    assert ((outputs.logits - expected_logits).abs().max() / expected_logits.abs().max()).item() <= 1e-4
    generated = model.generate(**inputs, max_new_tokens=12, do_sample=False)[0, inputs["input_ids"].shape[1] :]
    tokens, margins = reference.greedy(ids, expected_features, 12, [128001, 128009])
    assert min(margins) > 1e-3 and generated.tolist() == tokens


MEMORY_PROBE = """
import sys
sys.path.insert(0, {tests!r})
from inf_llava.conversion import convert

def high_water_kib():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1])

class Probe(convert.ShardedSafetensorsWriter):
    def close(self):
        files = super().close()
        print("peak", high_water_kib(), flush=True)
        return files

convert.ShardedSafetensorsWriter = Probe
plan = convert.plan_conversion({source!r})
import gc, torch
gc.collect()
print("before", int(next(l for l in open("/proc/self/status") if l.startswith("VmRSS")).split()[1]), flush=True)
open("/proc/self/clear_refs", "w").write("5")  # reset the high-water mark to the current RSS
plan.save({destination!r}, dtype=torch.float32, max_shard_size="{shard_mb}MB")
"""


@pytest.mark.slow
def test_conversion_memory_stays_near_one_shard(tmp_path):
    """A checkpoint ~13x larger (in fp32) than one shard converts with a peak of a few shards, not the model."""
    spec = FixtureSpec(text_width=64, text_intermediate=8192, text_layers=24)
    shard_mb = 16
    fixture = write_official_checkpoint(tmp_path / "sft", layout="sharded", spec=spec, shard_bytes=shard_mb * 10**6)
    assert len(list(fixture.path.glob("model-*.safetensors"))) >= 6
    destination = tmp_path / "converted"
    code = MEMORY_PROBE.format(
        tests=str(TESTS), source=str(fixture.path), destination=str(destination), shard_mb=shard_mb
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    values = dict(line.split() for line in out.stdout.splitlines() if line.startswith(("peak", "before")))
    growth_mb = (int(values["peak"]) - int(values["before"])) * 1024 / 1e6
    total_mb = sum(p.stat().st_size for p in destination.glob("model-*.safetensors")) / 1e6
    assert total_mb > 13 * shard_mb
    assert growth_mb < 5 * shard_mb, f"peak grew by {growth_mb:.0f} MB while converting {total_mb:.0f} MB"
