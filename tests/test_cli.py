import subprocess
import sys

from inf_llava.cli import build_parser, main


def _cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "inf_llava", *args], capture_output=True, text=True, timeout=timeout)


def test_help_lists_commands():
    out = _cli("--help")
    assert out.returncode == 0 and "demo" in out.stdout


def test_demo_runs_end_to_end():
    out = _cli("demo")
    assert out.returncode == 0, out.stderr
    assert "image features (1, 36, 64)" in out.stdout
    assert "save/load round trip gives the same answer: True" in out.stdout
    assert "Traceback" not in out.stderr


def test_user_errors_are_one_line(capsys, monkeypatch):
    parser = build_parser()
    assert parser.prog == "inf-llava"

    def boom(args):
        raise ValueError("data.json line 3 (sample 'x7'): roles out of order")

    monkeypatch.setattr("inf_llava.cli.demo.run", boom)
    assert main(["demo"]) == 2
    err = capsys.readouterr().err
    assert err == "error: data.json line 3 (sample 'x7'): roles out of order\n"
