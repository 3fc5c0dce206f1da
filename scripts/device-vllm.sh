#!/usr/bin/env bash
# The prepared GPU run of the vLLM integration (docs/serving.md, "Serving at scale with vLLM"): the `make test-vllm`
# tests (parity with our own inference in fp32 and bf16, the converted official layout, every config option,
# `vllm serve` with the openai client) on CUDA, then the serving benchmark against `inf-llava serve`.
#
# It needs a CUDA machine where vLLM 0.32 is installed: `pip install ".[vllm]"` in a clone (vLLM brings its own
# torch). The device machines lent to this project have neither vLLM nor a package index, and vLLM's CUDA wheel is
# far over the 64 MiB a device call may carry, so this run has not been made; docs/serving.md says so.
#
#   scripts/device-vllm.sh            -> $OUT/gpu-vllm/ (default runs/): test-vllm.log, bench.log, serving-bench.json
#   BENCH=0 scripts/device-vllm.sh    tests only
set -euo pipefail
cd "$(dirname "$0")/.."

out="${OUT:-runs}/gpu-vllm"
mkdir -p "$out"
PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c "import vllm" 2>/dev/null; then
    echo "vLLM is not installed for $PYTHON: pip install '.[vllm]' (vllm 0.32.x) first" >&2
    exit 2
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
"$PYTHON" -c "import torch, transformers, vllm; print('torch', torch.__version__, 'transformers', transformers.__version__, 'vllm', vllm.__version__, 'cuda', torch.cuda.is_available())"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
"$PYTHON" -m pytest -q -m vllm tests/integrations/vllm 2>&1 | tee "$out/test-vllm.log"
if [[ "${BENCH:-1}" != 0 ]]; then
    "$PYTHON" -m inf_llava bench serve --serve-dtype bf16 --output "$out" 2>&1 | tee "$out/bench.log"
fi
