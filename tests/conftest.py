"""Shared fixtures: the tiny preset (built locally, no hub access) and a few synthetic images."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

import inf_llava  # noqa: E402,F401  (registers the Auto classes)
from inf_llava.presets import build_tiny, build_tiny_tokenizer, processor_for, tiny_config  # noqa: E402


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return build_tiny_tokenizer()


@pytest.fixture()
def tiny(tiny_tokenizer):
    """(model, processor) of the tiny preset, seeded, in eval mode."""
    config = tiny_config(tiny_tokenizer)
    from inf_llava import InfLlavaForConditionalGeneration

    torch.manual_seed(0)
    model = InfLlavaForConditionalGeneration(config).eval()
    return model, processor_for(config, tiny_tokenizer)


@pytest.fixture()
def tiny_model(tiny):
    return tiny[0]


@pytest.fixture()
def tiny_processor(tiny):
    return tiny[1]


def random_image(seed: int, size=(64, 48)) -> Image.Image:
    rng = np.random.RandomState(seed)
    return Image.fromarray(rng.randint(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def shapes_image(size=(160, 100)) -> Image.Image:
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    draw.ellipse((10, 10, 60, 60), fill="red")
    draw.rectangle((100, 40, 150, 90), fill="blue")
    return image


@pytest.fixture()
def images():
    return [random_image(i, (40 + 13 * i, 90 - 7 * i)) for i in range(4)]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """The tiny preset (seed 0) saved with ``save_pretrained``: what ``--model DIR`` / ``from_pretrained`` load."""
    path = tmp_path_factory.mktemp("tiny-model")
    model, processor = build_tiny(seed=0)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


__all__ = ["build_tiny", "random_image", "shapes_image"]
