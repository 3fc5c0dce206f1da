"""The fixed-vs-dynamic section of ``docs/dynamic-grids.md`` and its figures, from the experiment's results file.

Accuracies are means over seeds and questions with two-level bootstrap 95% intervals; the difference dynamic - fixed
is paired by seed and question, tested with the paired permutation test (:mod:`inf_llava.eval.significance`), per
question kind, per orientation and overall. The section sits between two markers in the page, so the rest of the page
is left as written.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import numpy as np

from ..eval.significance import Claim, bootstrap_accuracy, claim
from ..jsonl import atomic_write_text
from .aspect_experiment import ARMS, LABELS
from .tasks import KINDS

BEGIN, END = "<!-- aspect-experiment:begin -->", "<!-- aspect-experiment:end -->"
FIGURE, CURVES = "img/dynamic-vs-fixed.png", "img/dynamic-vs-fixed-curves.png"


def correctness(results: dict[str, Any], arm: str, split: str = "test") -> tuple[list[int], np.ndarray]:
    """Seeds (sorted) and the ``(seeds, questions)`` 0/1 array of ``arm``."""
    runs = sorted((r for r in results["runs"].values() if r["arm"] == arm), key=lambda r: r["seed"])
    array = np.array([[int(c) for c in r[split]["correct"]] for r in runs], dtype=np.float64)
    return [r["seed"] for r in runs], array


def slices(results: dict[str, Any]) -> dict[str, np.ndarray]:
    """Boolean question masks: every kind, every orientation, and ``overall``."""
    questions = results["test_questions"]
    kinds = np.array([q["kind"] for q in questions])
    orientations = np.array([q["orientation"] for q in questions])
    out = {kind: kinds == kind for kind in KINDS}
    out.update({f"{o} images": orientations == o for o in ("wide", "tall")})
    out["overall"] = np.ones(len(questions), dtype=bool)
    return out


def paired_arms(results: dict[str, Any]) -> tuple[list[int], dict[str, np.ndarray]]:
    """The seeds both arms finished, and each arm's correctness on those seeds."""
    per_arm = {arm: dict(zip(*correctness(results, arm))) for arm in ARMS}
    seeds = sorted(set.intersection(*(set(v) for v in per_arm.values())))
    return seeds, {arm: np.stack([per_arm[arm][s] for s in seeds]) for arm in ARMS} if seeds else {}


def analyse(results: dict[str, Any], samples: int = 10_000) -> dict[str, Any]:
    seeds, arrays = paired_arms(results)
    if not seeds:
        raise ValueError("no seed has finished in both arms yet: nothing to compare")
    masks = slices(results)
    accuracy = {
        arm: {name: bootstrap_accuracy(arrays[arm][:, mask], samples=samples) for name, mask in masks.items()}
        for arm in ARMS
    }
    claims: dict[str, Claim] = {
        name: claim(
            f"{name}: dynamic beats fixed", arrays["dynamic"][:, mask], arrays["fixed"][:, mask], samples=samples
        )
        for name, mask in masks.items()
    }
    return {"seeds": seeds, "accuracy": accuracy, "claims": claims, "masks": masks}


def _figure(analysis: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(analysis["masks"])
    x = np.arange(len(names))
    fig, axis = plt.subplots(figsize=(9, 3.6))
    for offset, arm in zip((-0.18, 0.18), ARMS):
        intervals = [analysis["accuracy"][arm][n] for n in names]
        means = [i.mean for i in intervals]
        errors = [[i.mean - i.low for i in intervals], [i.high - i.mean for i in intervals]]
        axis.bar(x + offset, means, width=0.36, yerr=errors, capsize=3, label=LABELS[arm])
    axis.set_xticks(x, [n.replace("_", " ") for n in names], fontsize=8)
    axis.set_ylim(0, 1)
    axis.set_ylabel("test accuracy (95% CI)")
    axis.legend(fontsize=8, loc="lower right")
    axis.set_title(f"fixed 3x3 vs dynamic DCM grids, wide/tall scenes, {len(analysis['seeds'])} seeds")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _curves(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for axis, key, title in zip(axes, ("pretrain_curve", "curve"), ("stage 1: image side", "stage 2: questions")):
        for arm, color in zip(ARMS, ("tab:blue", "tab:orange")):
            for i, run in enumerate(r for r in results["runs"].values() if r["arm"] == arm):
                steps, losses = zip(*run[key])
                axis.plot(steps, losses, color=color, alpha=0.6, linewidth=1, label=LABELS[arm] if i == 0 else None)
        axis.set_title(title, fontsize=9)
        axis.set_xlabel("step")
        axis.set_ylabel("training loss")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def section(results: dict[str, Any], analysis: dict[str, Any]) -> str:
    recipe = results["recipe"]
    seeds = analysis["seeds"]
    n_questions = len(results["test_questions"])
    lines = [
        BEGIN,
        "Regenerate with `make aspect` (resumable; raw per-question results: "
        "[dynamic-grids.json](dynamic-grids.json)).",
        "",
        f"Both arms: the same {recipe['train_images']} training images (up to {recipe['questions_per_image']} "
        f"questions each), seeds {seeds}, stage 1 {recipe['pretrain_steps']} steps of batch "
        f"{recipe['pretrain_batch_size']} (image side on the scene attributes, lr {recipe['pretrain_lr']}), stage 2 "
        f"{recipe['steps']} steps of batch {recipe['batch_size']} (DEM + projector + LLM, tower frozen, lr "
        f"{recipe['lr']}); ViT {recipe['vision_layers']} x {recipe['vision_width']}, Llama {recipe['lm_layers']} x "
        f"{recipe['lm_width']}. Test: {n_questions} questions (kinds and orientations balanced), greedy exact match.",
        "",
        "![fixed vs dynamic](" + FIGURE + ")",
        "",
        "| questions | " + " | ".join(LABELS[a] for a in ARMS) + " | dynamic - fixed (95% CI) | p | verdict |",
        "|---|" + "---|" * (len(ARMS) + 3),
    ]
    for name, item in analysis["claims"].items():
        cells = [
            f"{analysis['accuracy'][arm][name].mean:.3f} [{analysis['accuracy'][arm][name].low:.3f}, "
            f"{analysis['accuracy'][arm][name].high:.3f}]"
            for arm in ARMS
        ]
        lines.append(
            f"| {name.replace('_', ' ')} | "
            + " | ".join(cells)
            + f" | {item.effect:+.3f} [{item.low:+.3f}, {item.high:+.3f}] | {item.p_value:.3g} | {item.verdict} |"
        )
    lines += ["", "Per run (test accuracy; training wall time on one thread of the machine that ran it):", ""]
    lines += ["| arm | seed | validation | test | " + " | ".join(k.replace("_", " ") for k in KINDS) + " | train s |"]
    lines += ["|---|---|---|---|" + "---|" * len(KINDS) + "---|"]
    masks = slices(results)
    for arm in ARMS:
        for run in sorted((r for r in results["runs"].values() if r["arm"] == arm), key=lambda r: r["seed"]):
            correct = np.array([int(c) for c in run["test"]["correct"]])
            kinds = " | ".join(f"{correct[masks[k]].mean():.3f}" for k in KINDS)
            lines.append(
                f"| {arm} | {run['seed']} | {run['validation']['accuracy']:.3f} | {run['test']['accuracy']:.3f} | "
                f"{kinds} | {run['train_seconds']:.0f} |"
            )
    train_s = [r["train_seconds"] + r["eval_seconds"] for r in results["runs"].values()]
    lines += [
        "",
        f"Learning curves (every run): ![curves]({CURVES})",
        "",
        f"Mean wall time per run (both stages + evaluation): {statistics.mean(train_s):.0f} s; machine: "
        f"{results.get('machine', 'not recorded')}.",
        END,
    ]
    return "\n".join(lines) + "\n"


def write(results: dict[str, Any], docs: str | Path, samples: int = 10_000) -> Path:
    """Rewrite the marked section of ``docs/dynamic-grids.md`` and the two figures; returns the page."""
    docs = Path(docs)
    analysis = analyse(results, samples=samples)
    _figure(analysis, docs / FIGURE)
    _curves(results, docs / CURVES)
    page = docs / "dynamic-grids.md"
    text = page.read_text() if page.exists() else "# Dynamic DCM grids\n"
    block = section(results, analysis)
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1].lstrip("\n")
    else:
        text = text.rstrip("\n") + "\n\n## Fixed 3x3 vs dynamic grids on wide and tall scenes\n\n" + block
    atomic_write_text(page, text)
    return page
