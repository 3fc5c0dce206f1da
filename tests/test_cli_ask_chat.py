"""`inf-llava ask` and `inf-llava chat`: answers equal the engine's, hostile inputs give one error line, multi-turn
state (history, new image, reset) behaves."""

import io
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import random_image, shapes_image
from PIL import Image

from inf_llava.cli import main
from inf_llava.inference import GenerationSettings, InfLlavaEngine

TOKENS = ["--max-new-tokens", "10"]
SETTINGS = GenerationSettings(max_new_tokens=10)


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    return InfLlavaEngine.from_pretrained(tiny_model_dir, dtype="fp32")


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "shapes.png"
    shapes_image().save(path)
    return path


def ask(capsys, model_dir, *args):
    code = main(["ask", "--model", str(model_dir), "--dtype", "fp32", *TOKENS, *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_ask_prints_the_engines_answer(capsys, tiny_model_dir, engine, photo):
    code, out, err = ask(capsys, tiny_model_dir, "--image", str(photo), "--question", "What is this?")
    assert code == 0, err
    expected = engine.complete([engine.question("What is this?")], [[shapes_image()]], SETTINGS)[0].text
    assert out == expected + "\n"
    code, streamed, _ = ask(capsys, tiny_model_dir, "--image", str(photo), "-q", "What is this?", "--stream")
    assert code == 0 and streamed == out


def test_ask_without_image_and_with_unicode(capsys, tiny_model_dir, engine):
    question = "Qu'est-ce que c'est ? 这是什么 🤔"
    code, out, err = ask(capsys, tiny_model_dir, "--question", question)
    assert code == 0, err
    assert out == engine.complete([engine.question(question, with_image=False)], [[]], SETTINGS)[0].text + "\n"


def _hostile_files(root):
    files = {}
    (root / "empty.jpg").write_bytes(b"")
    files["empty.jpg"] = "empty file (0 bytes)"
    (root / "text.jpg").write_bytes(b"GET / HTTP/1.1\r\n\r\n")
    files["text.jpg"] = "not a recognised image format"
    data = io.BytesIO()
    random_image(0, (80, 60)).save(data, "PNG")
    (root / "truncated.png").write_bytes(data.getvalue()[:200])
    files["truncated.png"] = "corrupt or truncated image"
    random_image(1, (300, 300)).save(root / "big.png")
    files["big.png"] = "90000 pixels is over the limit of 50000"
    files["missing.png"] = "no such image file"
    return files


def test_ask_refuses_hostile_images_with_one_line(capsys, tiny_model_dir, tmp_path):
    for name, reason in _hostile_files(tmp_path).items():
        path = tmp_path / name
        code, out, err = ask(capsys, tiny_model_dir, "--image", str(path), "-q", "What?", "--max-image-pixels", "50000")
        assert code == 2 and out == ""
        assert err.startswith(f"error: {path}: ") and reason in err and err.count("\n") == 1, err


def test_ask_handles_unusual_images(capsys, tiny_model_dir, tmp_path):
    frames = [Image.new("RGB", (20, 20), c) for c in ("red", "blue")]
    frames[0].save(tmp_path / "animated.gif", save_all=True, append_images=frames[1:])
    Image.new("CMYK", (30, 20), (0, 255, 0, 0)).save(tmp_path / "cmyk.tiff")
    Image.fromarray(np.full((16, 24), 40000, np.uint16)).save(tmp_path / "deep.png")
    Image.new("RGBA", (1, 1), (0, 0, 0, 0)).save(tmp_path / "pixel.png")
    Image.new("L", (20000, 10), 128).save(tmp_path / "strip.png")
    exif = Image.Exif()
    exif[0x0112] = 8
    shapes_image().save(tmp_path / "rotated.jpg", exif=exif)
    for name in ("animated.gif", "cmyk.tiff", "deep.png", "pixel.png", "strip.png", "rotated.jpg"):
        code, out, err = ask(capsys, tiny_model_dir, "--image", str(tmp_path / name), "-q", "What is this?")
        assert code == 0 and out.endswith("\n") and "error" not in err, (name, err)


def test_ask_user_errors(capsys, tiny_model_dir, photo):
    code, _, err = ask(capsys, tiny_model_dir, "--image", str(photo), "-q", "   ")
    assert code == 2 and err == "error: --question is empty\n"
    code, _, err = ask(capsys, tiny_model_dir, "-q", "hi", "--temperature", "-1")
    assert code == 2 and err == "error: temperature must be >= 0, got -1.0\n"
    code, _, err = ask(capsys, tiny_model_dir, "-q", "hi", "--load-in-4bit")
    assert code == 2 and "--load-in-4bit needs a CUDA GPU" in err and err.count("\n") == 1
    code, _, err = ask(capsys, tiny_model_dir.parent / "nowhere", "-q", "hi")
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1


def test_ask_process_exit_status_without_traceback(tiny_model_dir, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    run = subprocess.run(
        [sys.executable, "-m", "inf_llava", "ask", "--model", str(tiny_model_dir), "--image", str(bad), "-q", "x"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 2 and run.stdout == ""
    lines = run.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {bad}: corrupt or truncated image"), run.stderr


def test_chat_turns_image_and_reset(monkeypatch, capsys, tiny_model_dir, engine, photo, tmp_path):
    other = tmp_path / "other.png"
    random_image(7, (50, 90)).save(other)
    script = "\n".join(
        [
            "What is this?",
            "And the colour?",
            f"/image {other}",
            "Describe it.",
            "/reset",
            "Describe it.",
            "/image /no/such.png",
            "/bogus",
            "",
            "/quit",
            "never asked",
        ]
    )
    monkeypatch.setattr(sys, "stdin", io.StringIO(script + "\n"))
    code = main(["chat", "--model", str(tiny_model_dir), "--dtype", "fp32", "--image", str(photo), *TOKENS])
    out, err = capsys.readouterr()
    assert code == 0

    shapes, second = shapes_image(), Image.open(other).convert("RGB")
    first = engine.complete([engine.question("What is this?")], [[shapes]], SETTINGS)[0].text
    history = engine.question("What is this?") + [
        {"role": "assistant", "content": first},
        {"role": "user", "content": "And the colour?"},
    ]
    follow_up = engine.complete([history], [[shapes]], SETTINGS)[0].text
    fresh = engine.complete([engine.question("Describe it.")], [[second]], SETTINGS)[0].text
    assert out == "".join(answer + "\n" for answer in (first, follow_up, fresh, fresh))
    assert "error: /no/such.png: no such image file" in err
    assert "error: unknown command /bogus (try /help)" in err
    assert "Traceback" not in err


def test_packed_lm_weights_give_the_same_answer_in_bf16(capsys, tiny_model_dir, photo):
    from inf_llava.modeling.packed_linear import EXACTNESS, LM_MAX_ROWS, PackedLinear

    plain = InfLlavaEngine.from_pretrained(tiny_model_dir, dtype="bf16", device="cpu")
    packed = InfLlavaEngine.from_pretrained(tiny_model_dir, dtype="bf16", device="cpu", pack_lm_weights=True)
    assert type(packed.model.lm_head) is PackedLinear and type(plain.model.lm_head) is torch.nn.Linear
    lm_linears = [m for m in packed.model.model.language_model.modules() if isinstance(m, torch.nn.Linear)]
    assert lm_linears and all(type(m) is PackedLinear for m in lm_linears)
    question = [plain.question("What is this?")]
    expected = plain.complete(question, [[shapes_image()]], SETTINGS)[0].text
    assert packed.complete(question, [[shapes_image()]], SETTINGS)[0].text == expected
    # the packed path ran for the layers whose shape this CPU verified exact at a decoding step's row count (which
    # ones depends on the CPU: none where oneDNN has no packed bf16 kernel), and only for decode-sized products
    exact = [m for m in lm_linears if EXACTNESS.verdict((m.in_features, m.out_features, m.bias is not None), 1)]
    assert sum(m._packed is not None for m in lm_linears) == len(exact)
    assert all(m.max_rows == LM_MAX_ROWS for m in lm_linears)
    flags = ["--dtype", "bf16", "--pack-lm-weights", "--image", str(photo)]
    code, out, err = ask(capsys, tiny_model_dir, *flags, "-q", "What is this?")
    assert code == 0, err
    assert out == expected + "\n"
