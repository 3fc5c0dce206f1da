"""GPU runs of ``inf-llava eval run`` (``pytest -m gpu``): bf16 on CUDA, and 2 ranks sharing one GPU."""

import json
import os
import socket
import subprocess
import sys

import eval_fixtures as fx
import pytest
from eval_support import tiny_model_dir  # noqa: F401 - fixture

pytestmark = pytest.mark.gpu


def _port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_eval_run_on_cuda_single_and_sharded(tiny_model_dir, tmp_path):  # noqa: F811
    import torch

    assert torch.cuda.is_available(), "this test needs a CUDA device"
    data = fx.write_mmbench_tsv(tmp_path / "data")
    common = ["eval", "run", "--benchmark", "mmbench_en", "--data", str(data), "--model", str(tiny_model_dir)]
    common += ["--dtype", "bf16", "--max-new-tokens", "3", "--batch-size", "4", "--no-progress"]
    single = subprocess.run([sys.executable, "-m", "inf_llava", *common, "--output", str(tmp_path / "one")],
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    assert single.returncode == 0, single.stderr[-3000:]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(_port()),
               "-m", "inf_llava", *common, "--output", str(tmp_path / "two")]  # fmt: skip
    sharded = subprocess.run(command, capture_output=True, text=True, timeout=600, env=dict(os.environ))
    assert sharded.returncode == 0, sharded.stderr[-3000:]
    one, two = (tmp_path / d / "predictions.jsonl" for d in ("one", "two"))
    assert [json.loads(r)["key"] for r in two.read_text().splitlines()] == [
        json.loads(r)["key"] for r in one.read_text().splitlines()
    ]
    assert json.loads((tmp_path / "two" / "metrics.json").read_text())["world_size"] == 2
