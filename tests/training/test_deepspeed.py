"""DeepSpeed ZeRO-2 / ZeRO-3 through the shipped accelerate configs, on CPU (DeepSpeed's CPU accelerator, gloo).

Marked ``deepspeed``: run by ``make test-deepspeed`` (and ``make test-all``), which installs DeepSpeed into its own
folder; without it these fail at the import below, they are never skipped. DeepSpeed JIT-compiles a small C++ op on
first use (about a minute). accelerate only forms a multi-process DeepSpeed group on GPUs; on CPU one process is
what can run, and a 2-process launch is refused by the trainer instead of silently training twice.
"""

import json
import os
import subprocess
import sys

import pytest
import torch
import train_fixtures as fixtures
from train_fixtures import REPO, run, train_config, weights

tiny_model_dir = fixtures.tiny_model_dir
instruct_data = fixtures.instruct_data

pytestmark = pytest.mark.deepspeed


@pytest.fixture(autouse=True)
def deepspeed_installed():
    """Fail loudly (never skip) without DeepSpeed; imported here so that collecting the default suite needs none."""
    import deepspeed  # noqa: F401


def _launch(config: str, processes: int, output, model_dir, data, **settings) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", f"configs/accelerate/{config}.yaml"]
    command += ["--num_processes", str(processes), "--main_process_port", "0", "-m", "inf_llava", "train"]
    command += ["--stage", "finetune", "--model", str(model_dir), "--data", str(data)]
    command += ["--image-folder", str(data.parent / "images"), "--output", str(output), "--num-workers", "0"]
    command += ["--seed", "0", "--no-progress", "--batch-size", "4", "--lr", "1e-3"]
    for key, value in settings.items():
        command += [f"--{key.replace('_', '-')}", str(value)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, timeout=900, env=env, cwd=REPO)


@pytest.mark.parametrize("stage", ["deepspeed_zero2", "deepspeed_zero3"])
def test_zero_matches_plain_training_and_resumes(stage, tiny_model_dir, instruct_data, tmp_path):
    reference = tmp_path / "reference"
    run(train_config(tiny_model_dir, instruct_data, reference, max_steps=6, lr=1e-3))
    out = tmp_path / "ds"
    first = _launch(stage, 1, out, tiny_model_dir, instruct_data, max_steps=6, save_steps=2)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "finetune (DEEPSPEED)" in first.stdout
    a, b = weights(reference), weights(out)
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-5, atol=2e-6, msg=name)
    # Resume from a DeepSpeed checkpoint (engine-written shards + our trainer state) to the same weights.
    assert {"checkpoint-2", "checkpoint-4"} <= {p.name for p in out.iterdir()}
    resumed = tmp_path / "resumed"
    again = _launch(
        stage, 1, resumed, tiny_model_dir, instruct_data, max_steps=6, save_steps=2, resume_from=out / "checkpoint-2"
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert "checkpoint-2 at step 2/6" in again.stdout
    c = weights(resumed)
    for name in a:
        assert torch.equal(c[name], b[name]), name
    steps = [json.loads(line)["step"] for line in (resumed / "metrics.jsonl").read_text().splitlines()]
    assert steps == [3, 4, 5, 6]


def test_two_process_deepspeed_on_cpu_is_refused_not_run_twice(tiny_model_dir, instruct_data, tmp_path):
    done = _launch("deepspeed_zero2", 2, tmp_path / "ds2", tiny_model_dir, instruct_data, max_steps=2)
    assert done.returncode != 0
    assert "launched as 2 processes but accelerate set up 1" in done.stderr
    assert not (tmp_path / "ds2" / "config.json").exists()
