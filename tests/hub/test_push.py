"""``inf-llava push`` and ``push_to_hub`` against a local fake Hub (a real HTTP server on loopback, tests/hub/
fake_hub.py): what arrives (files, bytes, card, commit, branch / pull request, privacy), one-line errors, the dry
run, and that a ``snapshot_download`` from that Hub loads into the same model outputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import random_image
from fake_hub import FakeHub

from inf_llava import InfLlavaForConditionalGeneration, InfLlavaProcessor
from inf_llava.cli import main
from inf_llava.hub import plan_push
from inf_llava.hub.card import PARITY_STATEMENT
from inf_llava.training.config import TrainConfig

TOKEN = "hf_test_token"
ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "src" / "inf_llava" / "assets" / "demo-model"


@pytest.fixture()
def hub():
    with FakeHub(TOKEN) as server:
        yield server


def hub_env(hub: FakeHub, tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ, HF_ENDPOINT=hub.url, HF_HUB_OFFLINE="0", HF_HUB_DISABLE_XET="1", HF_TOKEN=TOKEN)
    env.update(HF_HOME=str(tmp_path / "hf-home"), HF_HUB_DISABLE_TELEMETRY="1", PYTHONPATH=str(ROOT / "src"))
    return env


@pytest.fixture()
def local_hub(hub, monkeypatch):
    """``hub`` for in-process calls: huggingface_hub's settings pointed at it, as HF_ENDPOINT, HF_HUB_OFFLINE=0 and
    HF_HUB_DISABLE_XET=1 set them at import (the endpoint and the download URL template derived from it)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", hub.url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub.url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    return hub


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "inf_llava", *args], env=env, capture_output=True, text=True, timeout=300, cwd=ROOT
    )


def download(hub: FakeHub, repo_id: str, tmp_path: Path, monkeypatch, revision: str | None = None) -> Path:
    import huggingface_hub
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    path = huggingface_hub.snapshot_download(
        repo_id, revision=revision, endpoint=hub.url, token=TOKEN, cache_dir=str(tmp_path / "cache")
    )
    return Path(path)


def outputs(model_dir: Path | str, seed: int = 3):
    """Logits and greedy tokens of a loaded directory on a fixed image and question."""
    processor = InfLlavaProcessor.from_pretrained(str(model_dir))
    model = InfLlavaForConditionalGeneration.from_pretrained(str(model_dir)).eval()
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is the shape?"}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    inputs = processor(images=[random_image(seed, (90, 60))], text=prompt, return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits
        tokens = model.generate(**inputs, max_new_tokens=6, do_sample=False)
    return inputs["input_ids"], logits, tokens


@pytest.fixture()
def model_dir(tmp_path, tiny):
    """A tiny model saved as `inf-llava train` leaves it: weights, processor, train_config.yaml, eval results."""
    model, processor = tiny
    out = tmp_path / "stage2"
    model.save_pretrained(out)
    processor.save_pretrained(out)
    train = TrainConfig(stage="finetune", model="org/base-model", data="data/instruct.json", output=str(out), lr=2e-5)
    (out / "train_config.yaml").write_text(train.to_yaml())
    metrics = {"benchmark": "mmbench_en", "score": 61.25, "questions": 80, "profile": "lmms_eval_2024_07"}
    (out / "eval-results" / "mmbench_en").mkdir(parents=True)
    (out / "eval-results" / "mmbench_en" / "metrics.json").write_text(json.dumps(metrics))
    (out / "checkpoint-250").mkdir()  # a training checkpoint: never uploaded
    (out / "metrics.jsonl").write_text("{}\n")
    return out


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card[4 : card.index("\n---", 4)])


def test_push_uploads_the_model_and_the_download_gives_the_same_outputs(hub, model_dir, tmp_path, monkeypatch):
    env = hub_env(hub, tmp_path)
    result = run_cli(
        ["push", str(model_dir), "me/tiny-inf-llava", "--private", "--commit-message", "First upload"]
        + ["--license", "apache-2.0", "--base-model", "org/vision"],
        env,
    )
    assert result.returncode == 0, result.stderr
    assert "not uploaded: checkpoint-250/, eval-results/, metrics.jsonl" in result.stdout
    repo = hub.repos["me/tiny-inf-llava"]
    assert repo.private
    assert [c.title for c in repo.commits["main"]] == ["initial commit", "First upload"]
    files = repo.refs["main"]
    suffixes = (".json", ".safetensors", ".yaml", ".jinja")
    local = sorted(p.name for p in model_dir.iterdir() if p.is_file() and p.suffix in suffixes)
    assert "chat_template.jinja" in local  # the processor saves its template written out
    assert sorted(files) == sorted([".gitattributes", "README.md", *local])
    for name in local:  # byte for byte what is on disk
        assert files[name] == (model_dir / name).read_bytes(), name
    assert "model.safetensors" in repo.lfs_paths and hub.lfs  # the weights went through git-LFS
    assert files["chat_template.jinja"].decode() == InfLlavaProcessor.from_pretrained(str(model_dir)).chat_template

    card = files["README.md"].decode()
    meta = front_matter(card)
    assert meta["license"] == "apache-2.0"
    assert meta["library_name"] == "transformers" and meta["pipeline_tag"] == "image-text-to-text"
    assert meta["base_model"] == ["org/vision", "org/base-model"]  # given + the training run's start (hub id)
    metric = meta["model-index"][0]["results"][0]
    assert metric["dataset"]["type"] == "lmms-lab/MMBench" and metric["metrics"][0]["value"] == 61.25
    config = InfLlavaForConditionalGeneration.config_class.from_pretrained(str(model_dir))
    g = config.geometry
    assert f"| DCM grid | {g.grid_h}x{g.grid_w}: {g.num_crops} local tiles + {g.num_crops} strided views of " in card
    assert f"| image tokens | {g.tokens_per_image} per image" in card
    h, w = g.high_res_size
    assert f"from a {h}x{w} input" in card and f"high_res path: pad to square, resize to {h}x{w}" in card
    assert "| lr | `2e-05` |" in card and "| stage | `finetune` |" in card
    assert "| MMBench-EN (dev) | 61.25 | 80 | lmms_eval_2024_07 | 70.35 |" in card
    assert "## Official parity" not in card  # not a converted checkpoint

    downloaded = download(hub, "me/tiny-inf-llava", tmp_path, monkeypatch)
    assert (downloaded / "chat_template.jinja").is_file()
    ids, logits, tokens = outputs(model_dir)
    ids2, logits2, tokens2 = outputs(downloaded)
    assert torch.equal(ids, ids2)
    assert torch.equal(logits, logits2)
    assert torch.equal(tokens, tokens2)


def test_push_to_a_branch_as_pull_request(local_hub, model_dir, tmp_path, monkeypatch, capsys):
    hub = local_hub
    assert main(["push", str(model_dir), "me/pr", "--revision", "v2", "--create-pr", "--token", TOKEN]) == 0
    assert f"pull request: {hub.url}/me/pr/discussions/1" in capsys.readouterr().out
    repo = hub.repos["me/pr"]
    assert sorted(repo.refs["main"]) == [".gitattributes"] == sorted(repo.refs["v2"])  # untouched until merged
    assert "model.safetensors" in repo.refs["refs/pr/1"]
    assert front_matter(repo.refs["refs/pr/1"]["README.md"].decode())["license"] == "other"  # default licence
    downloaded = download(hub, "me/pr", tmp_path, monkeypatch, revision="refs/pr/1")
    assert (downloaded / "model.safetensors").read_bytes() == (model_dir / "model.safetensors").read_bytes()


def test_bad_token_is_one_line(local_hub, model_dir, capsys):
    assert main(["push", str(model_dir), "me/x", "--token", "wrong"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: pushing to me/x failed: HTTP 401 (check the token")
    assert "me/x" not in local_hub.repos


def test_offline_mode_is_one_line(model_dir, capsys):
    assert main(["push", str(model_dir), "me/x"]) == 2  # the test session runs with HF_HUB_OFFLINE=1
    assert capsys.readouterr().err.strip() == "error: HF_HUB_OFFLINE is set: unset it to push (or use --dry-run)"


def test_dry_run_writes_the_card_and_contacts_nobody(hub, model_dir, tmp_path):
    out = tmp_path / "preview"
    result = run_cli(["push", str(model_dir), "me/dry", "--dry-run", "--dry-run-dir", str(out)], hub_env(hub, tmp_path))
    assert result.returncode == 0, result.stderr
    assert hub.requests == []
    listed = [line.split()[0] for line in result.stdout.splitlines() if line.startswith("  ") and "bytes" in line]
    assert listed == sorted(
        ["README.md", "chat_template.jinja", "config.json", "generation_config.json"]
        + ["model.safetensors", "processor_config.json", "tokenizer.json", "tokenizer_config.json"]
        + ["train_config.yaml"]
    )
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "chat_template.jinja"]
    assert front_matter((out / "README.md").read_text())["license"] == "other"


def test_model_and_processor_push_to_hub(hub, tiny, tmp_path, monkeypatch):
    """The inherited PushToHubMixin: the model carries weights, config and generation config; the processor its
    config, tokenizer and chat template. Together they load into the same outputs."""
    model, processor = tiny
    local = tmp_path / "local"
    model.save_pretrained(local)
    processor.save_pretrained(local)
    script = (
        "import inf_llava\n"
        "from inf_llava import InfLlavaForConditionalGeneration as M, InfLlavaProcessor as P\n"
        f"M.from_pretrained({str(local)!r}).push_to_hub('me/api', private=True)\n"
        f"P.from_pretrained({str(local)!r}).push_to_hub('me/api', commit_message='Add processor')\n"
    )
    env = hub_env(hub, tmp_path)
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    repo = hub.repos["me/api"]
    files = repo.refs["main"]
    expected = ["config.json", "generation_config.json", "model.safetensors", "processor_config.json"]
    expected += ["tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "README.md", ".gitattributes"]
    assert sorted(files) == sorted(expected)
    assert [c.title for c in repo.commits["main"]][-1] == "Add processor"
    assert files["chat_template.jinja"].decode() == processor.chat_template
    downloaded = download(hub, "me/api", tmp_path, monkeypatch)
    for got, want in zip(outputs(downloaded), outputs(local)):
        assert torch.equal(got, want)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: None, "not a model directory (no config.json)"),
        (lambda d: (d / "config.json").write_text('{"model_type": "llava"}'), "model_type is 'llava'"),
        (lambda d: (d / "config.json").write_text('{"model_type": "llava_llama"}'), "inf-llava convert-official"),
        (lambda d: (d / "config.json").write_text("{nope"), "unreadable"),
        (lambda d: (d / "config.json").write_text('{"model_type": "inf_llava"}'), "no weights"),
    ],
)
def test_refuses_what_is_not_a_model(tmp_path, capsys, make, message):
    folder = tmp_path / "thing"
    folder.mkdir()
    make(folder)
    assert main(["push", str(folder), "me/x", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]


def test_refuses_missing_shard_and_bad_repo_id(model_dir, capsys):
    assert main(["push", str(model_dir), "no-namespace", "--dry-run"]) == 2
    assert "must be NAMESPACE/NAME" in capsys.readouterr().err
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (model_dir / "model.safetensors.index.json").write_text(json.dumps(index))
    assert main(["push", str(model_dir), "me/x", "--dry-run"]) == 2
    assert "shard model-00001-of-00002.safetensors listed in model.safetensors.index.json is missing" in (
        capsys.readouterr().err
    )


def test_card_of_a_converted_checkpoint_states_parity(model_dir):
    report = {"source": "WeihuangLin/INF-LLaVA-sft", "summary": ["kept 7 tensors"], "files": ["model.safetensors"]}
    (model_dir / "conversion_report.json").write_text(json.dumps(report))
    plan = plan_push(model_dir, "me/converted", license="llama3")
    card = plan.files["README.md"]
    assert "## Official parity\n\n" + PARITY_STATEMENT in card
    assert "Source: `WeihuangLin/INF-LLaVA-sft`." in card and "- kept 7 tensors" in card
    assert front_matter(card)["base_model"] == ["WeihuangLin/INF-LLaVA-sft", "org/base-model"]
    assert "conversion_report.json" in plan.files


def test_card_of_the_demo_model_keeps_its_numbers():
    plan = plan_push(DEMO, "me/demo", license="apache-2.0")
    card = plan.files["README.md"]
    shipped = (DEMO / "README.md").read_text()
    accuracy = shipped.split("**")[1]  # the shipped card's held-out test accuracy
    assert f"**{accuracy}**" in card
    assert "## Notes from the model directory\n\n## inf-llava demo model" in card  # headings nested one level
    assert "| detail | " in card
