"""Scoring helpers shared by the benchmarks, one module per family of official scorers:

- :mod:`.vqa`: VQA answer normalisation (EvalAI and official) and the 10-choose-9 accuracy;
- :mod:`.mcq`: MMBench option matching and circular evaluation;
- :mod:`.mmmu`: MMMU multiple-choice and open-answer parsing;
- :mod:`.letters`: SEED-Bench / AI2D / ScienceQA letter rules;
- :mod:`.judge`: the LLaVA-Bench judge prompt, score parsing and relative score.
"""
