"""Run in a subprocess by test_eval_vlmeval.py: VLMEvalKit's own ``run.py`` (through this package's launcher) on
the fixture TSVs in $LMUData, offline, scoring multiple choice by exact matching (no judge).

Usage: python vlmeval_job.py WORK_DIR MODEL_DIR DATASET...
"""

import sys

import vlmeval_env

vlmeval_env.prepare()

import json  # noqa: E402

import vlmeval.config  # noqa: E402
import vlmeval.vlm  # noqa: E402
from vlmeval.dataset.image_mcq import ImageMCQDataset  # noqa: E402

from inf_llava.eval.vlmeval_plugin import register  # noqa: E402
from inf_llava.eval.vlmeval_plugin.run import main  # noqa: E402

work_dir, model_dir, *datasets = sys.argv[1:]
for name in datasets:  # the fixtures stand in for the released files, whose checksums they cannot have
    ImageMCQDataset.DATASET_MD5.pop(name, None)
names = register() + register(
    "tiny", model_path=model_dir, max_new_tokens=6
)  # registered, not run (random weights never stop)
registered = {name: vlmeval.config.supported_VLM[name] for name in names}
report = {
    "names": names,
    "classes": sorted({p.func.__name__ for p in registered.values()}),
    "keywords": {name: p.keywords for name, p in registered.items()},
    "in_vlmeval_vlm": vlmeval.vlm.InfLlavaVLM.__name__,
}
with open(f"{work_dir}-registered.json", "w") as handle:
    json.dump(report, handle)
main(["--model", "INF-LLaVA-demo", "--data", *datasets] + ["--work-dir", work_dir, "--judge", "exact_matching"])
