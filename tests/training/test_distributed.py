"""Real multi-process and interrupted runs: 2 CPU processes under torchrun (gloo), and a run killed with SIGKILL."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import train_fixtures as fixtures
from train_fixtures import cli, run, train_config, weights

from inf_llava.training.checkpoint import STATE_FILE, list_checkpoints

tiny_model_dir = fixtures.tiny_model_dir
instruct_data = fixtures.instruct_data


def _flags(model_dir, data, output, images=None, **settings) -> list[str]:
    images = images or data.parent / "images"
    args = ["--model", str(model_dir), "--data", str(data), "--image-folder", str(images)]
    args += ["--output", str(output), "--num-workers", "0", "--seed", "0", "--no-progress"]
    for key, value in settings.items():
        args += [f"--{key.replace('_', '-')}"] if value is True else [f"--{key.replace('_', '-')}", str(value)]
    return args


def _losses(output) -> list[float]:
    return [json.loads(line)["loss"] for line in (output / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize(
    "extra", [{}, pytest.param({"unfreeze_vision_tower": True}, marks=pytest.mark.slow, id="unfrozen-tower")]
)
def test_two_gloo_processes_match_one_process_with_the_same_global_batch(
    tiny_model_dir, instruct_data, tmp_path, extra
):
    """22 samples, global batch 4: the last step has 2 samples, all on process 0 (process 1 runs a zero-weight
    stand-in); every 4th sample is text-only. Finetune, so the whole LLM is synchronised too. With the vision tower
    unfrozen, its post-LayerNorm gets no gradient (the features are taken before it): DDP must be told."""
    settings = dict(max_steps=6, lr=1e-3, **extra)
    single = tmp_path / "single"
    run(train_config(tiny_model_dir, instruct_data, single, batch_size=4, **settings))
    ddp = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    command += ["-m", "inf_llava", "train", "--stage", "finetune"]
    command += _flags(tiny_model_dir, instruct_data, ddp, batch_size=2, **settings)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "global batch 4 (2 process(es) x 2 x 1 accumulation)" in done.stdout
    a, b = weights(single), weights(ddp)
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-5, atol=2e-6, msg=name)
    assert any(not torch.equal(a[n], weights(tiny_model_dir)[n]) for n in a)  # it trained
    single_losses, ddp_losses = _losses(single), _losses(ddp)
    assert len(ddp_losses) == 6  # logged once, by the main process
    torch.testing.assert_close(torch.tensor(ddp_losses), torch.tensor(single_losses), rtol=1e-5, atol=1e-6)


def test_sigkill_leaves_complete_checkpoints_and_resumes_to_the_same_weights(tiny_model_dir, instruct_data, tmp_path):
    settings = dict(max_steps=16, save_steps=2, batch_size=2, lr=1e-3)
    reference = tmp_path / "reference"
    run(train_config(tiny_model_dir, instruct_data, reference, **settings))
    killed = tmp_path / "killed"
    command = [sys.executable, "-m", "inf_llava", "train", "--stage", "finetune"]
    command += _flags(tiny_model_dir, instruct_data, killed, **settings)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 240
        while not list_checkpoints(killed) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (killed / "config.json").exists()  # the final model was never written
    checkpoints = list_checkpoints(killed)
    assert checkpoints and checkpoints[-1][0] < 16
    for step, path in checkpoints:
        assert json.loads((path / STATE_FILE).read_text())["global_step"] == step
        assert {"model.safetensors", "optimizer.bin", "random_states_0.pkl"} <= {p.name for p in path.iterdir()}
    # Anything half-written is hidden (".checkpoint-N.tmp") and never taken for a checkpoint.
    assert all(p.name.startswith(".") for p in killed.glob("*checkpoint-*") if p not in {c for _, c in checkpoints})
    result = run(train_config(tiny_model_dir, instruct_data, killed, resume_from="latest", **settings))
    assert result.completed and result.global_step == 16
    assert not list(killed.glob(".checkpoint-*"))  # temporaries of the killed run were cleaned up
    a, b = weights(reference), weights(killed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    steps = [json.loads(line)["step"] for line in (killed / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 17))


def test_bad_data_row_is_one_error_line_naming_the_sample(tiny_model_dir, instruct_data, tmp_path):
    rows = instruct_data.read_text().splitlines()
    bad = json.loads(rows[3]) | {"id": "swapped", "conversations": list(reversed(json.loads(rows[3])["conversations"]))}
    data = tmp_path / "data.jsonl"
    data.write_text("\n".join([*rows[:5], json.dumps(bad), *rows[5:]]) + "\n")
    flags = _flags(tiny_model_dir, data, tmp_path / "out", images=instruct_data.parent / "images", max_steps=1)
    done = cli("train", "--stage", "finetune", *flags)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last == (
        f"error: {data} line 6 (sample 'swapped'): roles out of order: turn 0 is 'gpt', expected 'human' "
        "(turns must alternate)"
    )
