#!/usr/bin/env bash
# The prepared GPU run of `inf-llava bench all` (issue: performance, item 6), for a lent device machine.
#
# Here, once:    scripts/device-bench.sh --fetch-wheels
#                (transformers as installed in .venv, as a wheel in .whl/, which git ignores; the device image has
#                torch, accelerate, pillow, matplotlib and transformers' other needs, but an older transformers)
# There:         device run, carry [".whl"], command "scripts/device-bench.sh", timeout_s 600
#                -> $OUT/gpu/performance.md, performance.json, img/performance.png and bench.log; copy them to
#                docs/gpu/ and rerun `make bench` here so that docs/performance.md links them.
#
# The package runs from src/ without being installed. bf16 for the LLM benchmarks; the encoder is timed in fp32 and
# bf16 at the full CLIP-L/14-336 depth (24 layers). DEVICE, LAYERS and REPEATS override the defaults (a smoke run
# here: DEVICE=cpu LAYERS=2 REPEATS=1 OUT=/tmp/smoke scripts/device-bench.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "--fetch-wheels" ]]; then
    version=$(.venv/bin/python -c "import transformers; print(transformers.__version__)")
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >>.git/info/exclude
    python3 -m pip download --no-deps --only-binary=:all: -d .whl "transformers==${version}"
    exit 0
fi

out="${OUT:-docs}/gpu"
mkdir -p "$out"
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site"
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
python3 -m inf_llava bench all --device "${DEVICE:-cuda}" --dtype bf16 --layers "${LAYERS:-24}" \
    --repeats "${REPEATS:-5}" --output "$out" 2>&1 | tee "$out/bench.log"
