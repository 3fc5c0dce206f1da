import subprocess
import sys

from inf_llava.cli import build_parser, main


def _cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "inf_llava", *args], capture_output=True, text=True, timeout=timeout)


def test_help_lists_commands():
    out = _cli("--help")
    assert out.returncode == 0 and "demo" in out.stdout


def test_demo_runs_end_to_end(tmp_path):
    import re

    from inf_llava.assets import DEMO_MODEL_DIR

    figure = tmp_path / "demo.png"
    out = _cli("demo", "--figure", str(figure))
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    lines = out.stdout.strip().splitlines()
    final = re.fullmatch(r"demo accuracy: (\d\.\d{3}) on (\d+) held-out questions", lines[-1])
    assert final, lines[-1]
    # the shipped model card states the test accuracy the demo reproduces on the bundled split
    card = (DEMO_MODEL_DIR / "README.md").read_text()
    assert f"**{final.group(1)}**" in card and final.group(2) == "300"
    detail = re.search(r"^\s+detail: (\d\.\d{3}) on 100$", out.stdout, re.M)
    assert detail and float(detail.group(1)) > 0.5  # chance is 0.25; the low-res baseline sits there
    assert re.search(r"Q: What color is the box\?\n\s+A: '\w+'\s+truth: '\w+'", out.stdout)
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_user_errors_are_one_line(capsys, monkeypatch):
    parser = build_parser()
    assert parser.prog == "inf-llava"

    def boom(args):
        raise ValueError("data.json line 3 (sample 'x7'): roles out of order")

    monkeypatch.setattr("inf_llava.cli.demo.run", boom)
    assert main(["demo"]) == 2
    err = capsys.readouterr().err
    assert err == "error: data.json line 3 (sample 'x7'): roles out of order\n"
