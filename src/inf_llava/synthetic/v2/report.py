"""``docs/ablation.md`` and its figures, regenerated from the ablation's results file (``docs/ablation.json``).

Accuracies are means over seeds and questions with two-level (seed x question) bootstrap 95% intervals. Every
alternative is compared with INF-LLaVA on the same seeds and questions: the difference's paired bootstrap interval,
the paired sign-flip permutation test, and for each seed the exact McNemar test (the largest of those p-values is
reported). A claim holds only when its interval excludes zero (:mod:`inf_llava.eval.significance`).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...eval.significance import Claim, bootstrap_accuracy, claim, mcnemar_exact
from ...jsonl import atomic_write_text
from .task import KINDS
from .variants import TABLE4, TABLE6, VARIANTS

FIGURE, CURVES, TASK_FIGURE = "img/ablation.png", "img/ablation-curves.png", "img/ablation-task.png"
REFERENCE = "inf_llava"
# What each input of the model holds about each kind (certified in tests/synthetic_v2/test_task.py).
CERTIFIED = {
    "global": ("yes", "yes", "yes", "yes"),
    "detail": ("chance", "chance", "yes", "yes"),
    "detail_in_context": ("chance", "chance", "yes", "yes"),
    "glyph_on_shape": ("chance", "chance", "yes", "yes"),
    "shape_with_glyph": ("chance", "chance", "yes", "yes"),
}
CHANCE = {"detail": 0.25, "detail_in_context": 0.25, "glyph_on_shape": 0.25, "shape_with_glyph": 0.5}
# The paper's numbers (spec section 17): POPE, SEEDBench, MM-Vet, LLaVA-wild.
PAPER = {
    "dcm_local": (86.12, 66.60, 27.80, 56.30),
    "dcm_global": (86.15, 70.06, 32.43, 62.90),
    "dcm_add": (85.77, 68.89, 18.90, 60.10),
    "inf_llava": (87.04, 70.62, 33.44, 66.40),
    "dem_global": (86.15, 69.06, 31.43, 62.90),
    "dem_local": (86.24, 69.45, 31.66, 62.70),
    "inf_llava (Table 4)": (86.94, 70.47, 34.50, 67.50),
}


@dataclass(frozen=True)
class Comparison:
    """A claim of the paper, as a comparison of two variants on this task."""

    statement: str
    better: str
    worse: str
    source: str


COMPARISONS = (
    Comparison("DCM + DEM beats local crops + DEM", "inf_llava", "dcm_local", "Table 6"),
    Comparison("DCM + DEM beats global crops + DEM", "inf_llava", "dcm_global", "Table 6"),
    Comparison("DEM beats naive fusion (both crops added)", "inf_llava", "dcm_add", "Table 6"),
    Comparison("global crops beat local crops", "dcm_global", "dcm_local", "Table 6 text"),
    Comparison("both DEM directions beat global-perspective enhancement only", "inf_llava", "dem_global", "Table 4"),
    Comparison("both DEM directions beat local-perspective enhancement only", "inf_llava", "dem_local", "Table 4"),
    Comparison("high resolution (INF-LLaVA) beats the low-resolution view alone", "inf_llava", "low_res", "Table 3"),
    Comparison("bilinear pooling (official) vs average pooling (paper)", "inf_llava", "dem_avg_pool", "code vs paper"),
    Comparison("mean fusion (official) vs addition (paper)", "inf_llava", "low_res_add", "code vs paper"),
    Comparison("official code vs the paper's wording", "inf_llava", "paper_wording", "code vs paper"),
)


def correctness(results: dict[str, Any], variant: str) -> dict[int, np.ndarray]:
    """seed -> 0/1 test correctness of ``variant``."""
    return {
        r["seed"]: np.array([int(c) for c in r["test"]["correct"]], dtype=np.float64)
        for r in results["runs"].values()
        if r["arm"] == variant
    }


def slices(results: dict[str, Any]) -> dict[str, np.ndarray]:
    kinds = np.array([q["kind"] for q in results["test_questions"]])
    out = {kind: kinds == kind for kind in KINDS}
    out["overall"] = np.ones(len(kinds), dtype=bool)
    return out


def _paired(results, a: str, b: str) -> tuple[list[int], np.ndarray, np.ndarray]:
    ca, cb = correctness(results, a), correctness(results, b)
    seeds = sorted(set(ca) & set(cb))
    if not seeds:
        return [], np.zeros((0, 0)), np.zeros((0, 0))
    return seeds, np.stack([ca[s] for s in seeds]), np.stack([cb[s] for s in seeds])


def analyse(results: dict[str, Any], samples: int = 10_000) -> dict[str, Any]:
    masks = slices(results)
    done = [v for v in VARIANTS if correctness(results, v)]
    accuracy = {}
    for variant in done:
        runs = np.stack(list(correctness(results, variant).values()))
        accuracy[variant] = {name: bootstrap_accuracy(runs[:, mask], samples=samples) for name, mask in masks.items()}
    claims: dict[str, dict[str, Claim]] = {}
    mcnemar: dict[str, float] = {}
    for comparison in COMPARISONS:
        seeds, a, b = _paired(results, comparison.better, comparison.worse)
        if len(seeds) < 2:
            continue
        claims[comparison.statement] = {
            name: claim(comparison.statement, a[:, mask], b[:, mask], samples=samples) for name, mask in masks.items()
        }
        mcnemar[comparison.statement] = max(mcnemar_exact(a[i], b[i]) for i in range(len(seeds)))
    return {"masks": masks, "variants": done, "accuracy": accuracy, "claims": claims, "mcnemar": mcnemar}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _figure(analysis: dict[str, Any], path: Path) -> None:
    plt = _plt()
    names = list(analysis["masks"])
    variants = analysis["variants"]
    x = np.arange(len(names))
    width = 0.8 / max(1, len(variants))
    fig, axis = plt.subplots(figsize=(11, 4))
    for i, variant in enumerate(variants):
        intervals = [analysis["accuracy"][variant][n] for n in names]
        means = [iv.mean for iv in intervals]
        errors = [[iv.mean - iv.low for iv in intervals], [iv.high - iv.mean for iv in intervals]]
        axis.bar(x - 0.4 + (i + 0.5) * width, means, width=width, yerr=errors, capsize=2, label=variant)
    for j, name in enumerate(names):
        if name in CHANCE:
            axis.hlines(CHANCE[name], j - 0.4, j + 0.4, colors="black", linestyles="dotted", linewidth=1)
    axis.set_xticks(x, [n.replace("_", " ") for n in names], fontsize=8)
    axis.set_ylim(0, 1.05)
    axis.set_ylabel("test accuracy (95% CI)")
    axis.legend(fontsize=7, ncol=5, loc="upper center", bbox_to_anchor=(0.5, -0.1))
    axis.set_title("ablation on task v2: accuracy per question kind (dotted: chance without the glyphs)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _curves(results: dict[str, Any], variants: list[str], path: Path) -> None:
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    colors = dict(zip(VARIANTS, plt.rcParams["axes.prop_cycle"].by_key()["color"] * 2))
    panels = (("pretrain_curve", "stage 1: image side (loss)"), ("curve", "stage 2: questions (loss)"))
    for axis, (key, title) in zip(axes, panels):
        for variant in variants:
            for i, run in enumerate(r for r in results["runs"].values() if r["arm"] == variant):
                steps, values = zip(*run[key])
                axis.plot(steps, values, color=colors[variant], alpha=0.5, lw=1, label=variant if i == 0 else None)
        axis.set_title(title, fontsize=9)
        axis.set_xlabel("step")
    for variant in variants:
        for run in (r for r in results["runs"].values() if r["arm"] == variant):
            steps, values = zip(*run["validation_history"])
            axes[2].plot(steps, values, color=colors[variant], alpha=0.5, lw=1, marker=".")
    axes[2].set_title("stage 2: validation accuracy", fontsize=9)
    axes[2].set_xlabel("step")
    axes[0].legend(fontsize=6)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def task_figure(path: Path, seed: int = 4) -> None:
    """One scene at 4x, its low-resolution view (the centre strided view) and one other strided view."""
    import random

    import torch
    from PIL import Image

    from ...modeling.cropping import global_crops
    from .task import render, sample_scene

    image = render(sample_scene(random.Random(seed), 72))
    x = torch.from_numpy(np.array(image)).permute(2, 0, 1)
    views = global_crops(x, 3)
    low, other = (Image.fromarray(views[i].permute(1, 2, 0).numpy()) for i in (4, 0))
    side = image.width * 4
    sheet = Image.new("RGB", (side * 3 + 20, side), (255, 255, 255))
    for i, picture in enumerate((image, low, other)):
        sheet.paste(picture.resize((side, side), Image.Resampling.NEAREST), (i * (side + 10), 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)


def _interval(iv) -> str:
    return f"{iv.mean:.3f} [{iv.low:.3f}, {iv.high:.3f}]"


def _task_section() -> list[str]:
    lines = [
        "## The task (v2)",
        "",
        "![a scene of task v2 at 4x; its low-resolution view; one other strided view](" + TASK_FIGURE + ")",
        "",
        "Each 72 x 72 image (the 3x3 grid of 24-px views) holds two large shapes of different kinds and three or four "
        "3x3-pixel glyphs of distinct types, one per quadrant: one on each shape, the others on the background. The "
        "four glyph types are the rotations of one hook, with equal ink in every row and column, so a stride-3 pick "
        "(any strided view, the low-resolution view included: for an odd grid it is the centre strided view) keeps "
        "exactly one pixel of a glyph, uniformly random over its cells: the type is invisible to any single view, at "
        "every phase. The local tiles, and the nine strided views together, hold every pixel "
        "(`src/inf_llava/synthetic/v2/task.py`).",
        "",
        "| kind | example | low-res view | one strided view | local tiles alone | all views |",
        "|---|---|---|---|---|---|",
    ]
    examples = {
        "global": "What color is the circle? / Where is the square? / What shape is in the top left?",
        "detail": "Which glyph is in the top right?",
        "detail_in_context": "Where is the north glyph?",
        "glyph_on_shape": "Which glyph is on the triangle?",
        "shape_with_glyph": "Which shape has the east glyph?",
    }
    for kind in KINDS:
        lines.append(f"| {kind.replace('_', ' ')} | {examples[kind]} | " + " | ".join(CERTIFIED[kind]) + " |")
    lines += [
        "",
        "Certified in `tests/synthetic_v2/test_task.py`: the Bayes-optimal accuracy of reading a glyph's type from one "
        "strided view, enumerated over the task's placement distribution, is below 0.27 at all nine phases (chance "
        "0.25); an oracle reading the local tiles alone, or all strided views, answers every question of every kind; "
        "an oracle reading the low-resolution view (or one strided view) answers every `global` question and is at "
        "chance on the four glyph kinds. The glyph kinds need high-resolution detail; `glyph_on_shape` and "
        "`shape_with_glyph` also bind it to a large object (two shapes and three or four glyphs per image), and "
        "`detail_in_context` to a place. Kinds are balanced in every split; a training image carries one question "
        "of each kind.",
        "",
    ]
    return lines


def _paper_section() -> list[str]:
    lines = [
        "## The paper's rows and ours",
        "",
        "The paper's numbers (POPE / SEEDBench / MM-Vet / LLaVA-wild; spec section 17) beside the variant that "
        "reproduces each row (`src/inf_llava/synthetic/v2/variants.py`).",
        "",
        "| paper row | variant | POPE | SEED | MM-Vet | LLaVA-wild |",
        "|---|---|---|---|---|---|",
    ]
    rows = [(VARIANTS[n].paper_row, n, n) for n in TABLE6]
    rows += [(VARIANTS[n].paper_row, n, "inf_llava (Table 4)" if n == "inf_llava" else n) for n in TABLE4]
    for label, name, key in rows:
        lines.append(f"| {label} | `{name}` | " + " | ".join(f"{v:.2f}" for v in PAPER[key]) + " |")
    lines += [
        "",
        "Table 5 (fusion operators inside the DEM: Conv, multiplication, weighted addition, max-pool, addition) has no "
        "variant here: only the official Linear-Concat fusion is implemented. `dem_avg_pool`, `low_res_add` and "
        "`paper_wording` are not rows of the paper: they run what its text says where the official code does "
        "otherwise.",
        "",
    ]
    return lines


def _results_section(results: dict[str, Any], analysis: dict[str, Any]) -> list[str]:
    recipe = results["recipe"]
    names = list(analysis["masks"])
    runs = results["runs"]
    seeds = sorted({r["seed"] for r in runs.values()})
    lines = [
        "## Results",
        "",
        f"{len(runs)} of {len(VARIANTS) * 5} runs finished ({len(analysis['variants'])} variants; seeds {seeds}). "
        f"Recipe, the same for every variant: {recipe['train_images']} training images ({recipe['questions_per_image']}"
        f" questions each); per seed, the shared tower pretrained {recipe['tower_steps']} steps of batch "
        f"{recipe['tower_batch_size']} (per-patch targets, lr {recipe['tower_lr']}); per run, stage 1 "
        f"{recipe['pretrain_steps']} steps of batch {recipe['pretrain_batch_size']} (DEM + projector on the scene "
        f"attributes, tower frozen, lr {recipe['pretrain_lr']}), stage 2 up to {recipe['steps']} steps of batch "
        f"{recipe['batch_size']} (DEM + projector + LLM, tower frozen, lr {recipe['lr']}), validated every "
        f"{recipe['eval_every']} steps on {recipe['validation_images']} questions, stopping after "
        f"{recipe['patience']} evaluations without improvement and keeping the best; ViT {recipe['vision_layers']} x "
        f"{recipe['vision_width']}, Llama {recipe['lm_layers']} x {recipe['lm_width']}. Test: "
        f"{len(results['test_questions'])} questions, kinds balanced, greedy exact match.",
        "",
        "![accuracy per kind](" + FIGURE + ")",
        "",
        "| variant | seeds | " + " | ".join(n.replace("_", " ") for n in names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for variant in analysis["variants"]:
        count = len(correctness(results, variant))
        cells = " | ".join(_interval(analysis["accuracy"][variant][n]) for n in names)
        lines.append(f"| `{variant}` | {count} | {cells} |")
    lines += ["", "## The paper's claims, tested", ""]
    for comparison in COMPARISONS:
        per_slice = analysis["claims"].get(comparison.statement)
        if per_slice is not None:
            item = per_slice["overall"]
            kinds = [k for k in KINDS if per_slice[k].verdict != item.verdict]
            differs = f"; per kind: {', '.join(f'{k} {per_slice[k].verdict}' for k in kinds)}" if kinds else ""
            lines.append(
                f"- {comparison.statement} ({comparison.source}): **{item.verdict}** overall, {item.effect:+.3f} "
                f"[{item.low:+.3f}, {item.high:+.3f}], p = {item.p_value:.3g}{differs}."
            )
    lines += [""]
    lines += [
        "Each claim compares INF-LLaVA (or the named variant) with an alternative on the same seeds and questions: "
        "difference of accuracies with its paired bootstrap 95% interval and the paired permutation p-value, overall "
        "and per kind; the largest per-seed exact McNemar p-value (overall) is given too. Verdict: *holds* when the "
        "interval is above zero, *refuted* when below, otherwise *undecided*.",
        "",
        "| claim | source | slice | difference (95% CI) | p (permutation) | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for comparison in COMPARISONS:
        per_slice = analysis["claims"].get(comparison.statement)
        if per_slice is None:
            lines.append(f"| {comparison.statement} | {comparison.source} | - | not enough paired seeds yet | | |")
            continue
        for name in ["overall", *(n for n in names if n != "overall")]:
            item = per_slice[name]
            label = comparison.statement if name == "overall" else ""
            source = f"{comparison.source} (McNemar max p {analysis['mcnemar'][comparison.statement]:.2g})"
            lines.append(
                f"| {label} | {source if name == 'overall' else ''} | {name.replace('_', ' ')} | {item.effect:+.3f} "
                f"[{item.low:+.3f}, {item.high:+.3f}] | {item.p_value:.3g} | {item.verdict} |"
            )
    lines += ["", "## Every run", ""]
    lines += ["| variant | seed | best step | validation | test | train s |", "|---|---|---|---|---|---|"]
    for variant in VARIANTS:
        for run in sorted((r for r in runs.values() if r["arm"] == variant), key=lambda r: r["seed"]):
            lines.append(
                f"| `{variant}` | {run['seed']} | {run['best_step']} | {run['validation']['accuracy']:.3f} | "
                f"{run['test']['accuracy']:.3f} | {run['train_seconds']:.0f} |"
            )
    wall = [r["train_seconds"] + r["eval_seconds"] for r in runs.values()]
    lines += [
        "",
        f"Learning curves of every run: ![curves]({CURVES})",
        "",
        f"Mean wall time per run (both stages, validation and test answers, one thread): {statistics.mean(wall):.0f} s"
        f"; with two runs at a time the grid of {len(VARIANTS) * 5} runs takes about "
        f"{statistics.mean(wall) * len(VARIANTS) * 5 / 2 / 3600:.1f} h. Machine: {results.get('machine', '?')}.",
        "",
    ]
    return lines


def write(results: dict[str, Any], docs: str | Path, samples: int = 10_000, findings: str = "") -> Path:
    """Rewrite ``docs/ablation.md`` and its figures from ``results``; ``findings`` (markdown) goes after the
    title. Returns the page."""
    docs = Path(docs)
    analysis = analyse(results, samples=samples)
    task_figure(docs / TASK_FIGURE)
    if analysis["variants"]:
        _figure(analysis, docs / FIGURE)
        _curves(results, analysis["variants"], docs / CURVES)
    lines = [
        "# The paper's ablation on a synthetic task that needs both perspectives",
        "",
        "Regenerate with `make ablation` (resumable: finished runs are kept in [ablation.json](ablation.json), the "
        "per-question results; `inf-llava ablation --report-only` rewrites this page from it).",
        "",
    ]
    if findings:
        lines += [findings.rstrip("\n"), ""]
    lines += _task_section() + _paper_section() + _results_section(results, analysis)
    page = docs / "ablation.md"
    atomic_write_text(page, "\n".join(lines))
    return page
