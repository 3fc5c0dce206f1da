"""Run in a subprocess by test_eval_vlmeval.py: VLMEvalKit's own ``run.py`` (through this package's launcher) on
the fixture TSVs in $LMUData, offline, scoring multiple choice by exact matching (no judge).

Usage: python vlmeval_job.py WORK_DIR MODEL_DIR DATASET...
"""

import sys

import vlmeval_env

vlmeval_env.prepare()

from vlmeval.dataset.image_mcq import ImageMCQDataset  # noqa: E402

from inf_llava.eval.vlmeval_plugin import register  # noqa: E402
from inf_llava.eval.vlmeval_plugin.run import main  # noqa: E402

work_dir, model_dir, *datasets = sys.argv[1:]
for name in datasets:  # the fixtures stand in for the released files, whose checksums they cannot have
    ImageMCQDataset.DATASET_MD5.pop(name, None)
register("tiny", model_path=model_dir, max_new_tokens=6)  # random weights never stop by themselves
main(["--model", "INF-LLaVA-demo", "tiny", "--data", *datasets]
     + ["--work-dir", work_dir, "--judge", "exact_matching"])
