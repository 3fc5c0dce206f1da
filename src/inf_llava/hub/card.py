"""The model card (``README.md`` with YAML metadata) of an INF-LLaVA repository, generated from what was saved.

Every number comes from the directory: the architecture and the geometry from the saved config (through
:class:`inf_llava.geometry.Geometry`), the preprocessing path from the processor config, parameter counts from the
weight files' headers, the training recipe from ``train_config.yaml``, evaluation numbers from the ``metrics.json``
files of ``inf-llava eval run``, and the official-parity statement only for directories written by
``inf-llava convert-official`` (they carry ``conversion_report.json``). A card already in the directory (e.g. the
shipped demo model's, with its synthetic-task numbers) is kept as the card's notes section.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..configuration import InfLlavaConfig
from ..errors import DataError
from .model_dir import PROCESSOR_FILE, ModelDir

PAPER_TITLE = "INF-LLaVA: Dual-perspective Perception for High-Resolution Multimodal Large Language Model"
PAPER_URL = "https://arxiv.org/abs/2407.16198"
CITATION = """@article{ma2024infllava,
  title={INF-LLaVA: Dual-perspective Perception for High-Resolution Multimodal Large Language Model},
  author={Ma, Yiwei and Wang, Zhibin and Sun, Xiaoshuai and Lin, Weihuang and Zhou, Qiang and Ji, Jiayi and Ji,
    Rongrong},
  journal={arXiv preprint arXiv:2407.16198},
  year={2024}
}"""
DEFAULT_LICENSE = "other"
# What the conversion tests establish (docs/official-checkpoints.md); stated only for converted checkpoints.
PARITY_STATEMENT = (
    "Converted from the official INF-LLaVA release with `inf-llava convert-official`. The converted model "
    "reproduces the official code: the prompt string byte for byte, the prompt ids (double BOS, image slots), the "
    "preprocessing, and in fp32 on CPU the image features and logits bit for bit and the greedy tokens exactly, as "
    "tested on miniature checkpoints in the released layout (inf-llava's `tests/conversion/`, "
    "`docs/official-checkpoints.md`). Half-precision parity is not claimed."
)
# Recipe fields shown in the training table, in this order (the full train_config.yaml follows it).
RECIPE_FIELDS = (
    "stage",
    "data",
    "image_folder",
    "template",
    "epochs",
    "max_steps",
    "batch_size",
    "grad_accum",
    "lr",
    "lr_scheduler",
    "warmup_ratio",
    "weight_decay",
    "max_length",
    "unfreeze_vision_tower",
    "lora",
    "bf16",
    "seed",
)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass
class CardOptions:
    """What the directory cannot say: where it goes and under which terms."""

    repo_id: str
    license: str = DEFAULT_LICENSE
    base_models: Sequence[str] = ()
    datasets: Sequence[str] = ()
    eval_metrics: Sequence[Mapping[str, Any]] = field(default_factory=list)
    description: str | None = None


def looks_like_hub_id(value: Any) -> bool:
    return isinstance(value, str) and bool(_HUB_ID.match(value)) and not Path(value).exists()


def parameter_counts(model_dir: ModelDir) -> dict[str, int]:
    """Parameters per part (vision tower, DEM, projector, language model) from the safetensors headers."""
    from safetensors import safe_open

    parts = {
        "vision tower": ("model.image_encoder.vision_tower.", "model.image_encoder.feature_norm."),
        "DEM": ("model.image_encoder.dem.",),
        "projector": ("model.image_encoder.projector.",),
        "language model": ("model.language_model.", "lm_head."),
    }
    counts = dict.fromkeys([*parts, "total"], 0)
    for path in model_dir.files:
        if not path.name.endswith(".safetensors"):
            continue
        with safe_open(str(path), framework="pt") as handle:
            for key in handle.keys():
                numel = 1
                for size in handle.get_slice(key).get_shape():
                    numel *= size
                counts["total"] += numel
                for part, prefix in parts.items():
                    if key.startswith(prefix):
                        counts[part] += numel
    return counts


def _millions(n: int) -> str:
    if n >= 1e9:
        return f"{n / 1e9:.2f}B"
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.1f}K"


def processor_mode(processor_config: Mapping[str, Any], config: InfLlavaConfig) -> str:
    """``high_res`` (the official training path) or ``base`` (the official inference path) from the saved size."""
    size = processor_config.get("image_processor", {}).get("size", {})
    saved = (size.get("height"), size.get("width"))
    geometry = config.geometry
    if saved == tuple(geometry.high_res_size):
        return "high_res"
    if saved == tuple(geometry.base_size):
        return "base"
    return f"custom ({saved[0]}x{saved[1]})"


def architecture_rows(config: InfLlavaConfig, processor_config: Mapping[str, Any], counts: Mapping[str, int]):
    g = config.geometry
    vision, text = config.vision_config, config.text_config
    high_h, high_w = g.high_res_size
    mode = processor_mode(processor_config, config)
    image_processor = processor_config.get("image_processor", {})
    return [
        (
            "vision tower",
            f"{vision.model_type}, {vision.num_hidden_layers} layers x {vision.hidden_size}, "
            f"{vision.image_size}-px input, {vision.patch_size}-px patches; features of layer "
            f"{config.vision_feature_layer} ({config.vision_feature_select_strategy}"
            f"{', LayerNorm-ed' if config.vision_feature_norm else ''}); "
            f"{_millions(counts['vision tower'])} parameters",
        ),
        (
            "DCM grid",
            f"{g.grid_h}x{g.grid_w}: {g.num_crops} local tiles + {g.num_crops} strided views of "
            f"{g.view_size}x{g.view_size} from a {high_h}x{high_w} input",
        ),
        (
            "DEM",
            f"fusion `{config.perspective_fusion}` of perspectives `{config.perspectives}`, "
            f"{config.dem_num_heads} heads, "
            f"FFN ratio {config.dem_ffn_ratio}, pooling {config.dem_pooling!r}; {_millions(counts['DEM'])} parameters",
        ),
        (
            "low-resolution view",
            f"{'fused by ' + repr(config.low_res_fusion) if config.use_low_res_view else 'off'}",
        ),
        ("projector", f"{config.projector_type}; {_millions(counts['projector'])} parameters"),
        (
            "language model",
            f"{text.model_type}, {text.num_hidden_layers} layers x {text.hidden_size}, vocabulary {text.vocab_size}; "
            f"{_millions(counts['language model'])} parameters",
        ),
        ("image tokens", f"{g.tokens_per_image} per image ({g.patches_per_side}x{g.patches_per_side})"),
        (
            "preprocessing",
            f"{mode} path: {'pad to square, ' if image_processor.get('pad_to_square') else ''}resize to "
            f"{image_processor.get('size', {}).get('height')}x{image_processor.get('size', {}).get('width')}",
        ),
        ("chat template", f"`{processor_config.get('template')}`"),
        ("parameters", _millions(counts["total"])),
    ]


def load_train_config(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise DataError(f"{path}: unreadable ({' '.join(str(exc).split())})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a mapping of training settings")
    return data


def load_eval_metrics(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    """The ``metrics.json`` files of ``inf-llava eval run`` under ``paths`` (files or folders)."""
    from ..eval.report import find_metrics

    out = []
    for path in find_metrics(paths):
        try:
            metrics = json.loads(path.read_text(encoding="utf-8"))
            metrics["benchmark"], metrics["score"]
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise DataError(f"{path}: not a metrics file of `inf-llava eval run` ({exc})") from None
        out.append(metrics)
    return out


def _eval_results(metrics: Sequence[Mapping[str, Any]]) -> list[EvalResult]:
    from ..eval import get_benchmark

    results = []
    for row in metrics:
        if row.get("score") is None:
            continue
        benchmark = get_benchmark(row["benchmark"])
        results.append(
            EvalResult(
                task_type="image-text-to-text",
                dataset_type=benchmark.hub.path,
                dataset_name=benchmark.title,
                dataset_config=benchmark.hub.config,
                dataset_split=benchmark.hub.split,
                metric_type="accuracy" if not benchmark.uses_judge else "relative_score",
                metric_value=round(float(row["score"]), 2),
                metric_name=f"{benchmark.title} ({row.get('profile', 'lmms_eval_2024_07')} scoring)",
            )
        )
    return results


def _eval_table(metrics: Sequence[Mapping[str, Any]]) -> str:
    from ..eval import get_benchmark
    from ..eval.report import PAPER_TABLE1, REFERENCE_ROW

    paper = PAPER_TABLE1[REFERENCE_ROW]
    lines = ["| benchmark | score | questions | scoring | paper (INF-LLaVA) |", "|---|---|---|---|---|"]
    for row in sorted(metrics, key=lambda r: r["benchmark"]):
        benchmark = get_benchmark(row["benchmark"])
        score = "-" if row.get("score") is None else f"{float(row['score']):.2f}"
        reference = paper.get(benchmark.paper_column)
        lines.append(
            f"| {benchmark.title} | {score} | {row.get('questions', '-')} | {row.get('profile', '-')} | "
            f"{'-' if reference is None else f'{reference:.2f}'} |"
        )
    return "\n".join(lines)


def _recipe_table(train: Mapping[str, Any]) -> str:
    lines = ["| setting | value |", "|---|---|"]
    for name in RECIPE_FIELDS:
        if name in train and train[name] is not None:
            value = train[name]
            if name == "lora" and value:
                value = f"r={train.get('lora_r')}, alpha={train.get('lora_alpha')}"
            lines.append(f"| {name} | `{value}` |")
    return "\n".join(lines)


def _strip_front_matter(text: str) -> str:
    if text.startswith("---\n"):
        end = text.find("\n---", 4)
        if end != -1:
            return text[end + 4 :].lstrip("\n")
    return text


def build_card(model_dir: ModelDir, options: CardOptions) -> ModelCard:
    """The card of ``model_dir`` for ``options.repo_id``."""
    config = InfLlavaConfig.from_pretrained(str(model_dir.path))
    processor_config = json.loads((model_dir.path / PROCESSOR_FILE).read_text(encoding="utf-8"))
    counts = parameter_counts(model_dir)
    train = load_train_config(model_dir.train_config)
    report = model_dir.conversion_report
    base_models = list(options.base_models)
    if report and looks_like_hub_id(report.get("source")) and report["source"] not in base_models:
        base_models.append(report["source"])
    if train and looks_like_hub_id(train.get("model")) and train["model"] not in base_models:
        base_models.append(train["model"])
    datasets = list(options.datasets)
    if train and looks_like_hub_id(train.get("data")) and train["data"] not in datasets:
        datasets.append(train["data"])
    name = options.repo_id.split("/")[-1]
    eval_results = _eval_results(options.eval_metrics)
    data = ModelCardData(
        license=options.license,
        library_name="transformers",
        pipeline_tag="image-text-to-text",
        tags=["inf-llava", "llava", "multimodal", "high-resolution", "vision-language"],
        base_model=base_models or None,
        datasets=datasets or None,
        model_name=name,
        eval_results=eval_results or None,
    )
    g = config.geometry
    sections = [
        f"# {name}",
        options.description
        or (
            f"An INF-LLaVA model ([{PAPER_TITLE}]({PAPER_URL})): dual-perspective cropping (DCM) of a "
            f"{g.high_res_size[0]}x{g.high_res_size[1]} input into local tiles and strided views, fused by the "
            f"dual-perspective enhancement module (DEM) into {g.tokens_per_image} image tokens. Saved with the "
            "`inf-llava` package; loads with plain `transformers` once `inf_llava` is imported."
        ),
        "## Architecture",
        "| part | |\n|---|---|\n"
        + "\n".join(f"| {part} | {text} |" for part, text in architecture_rows(config, processor_config, counts)),
        "## Usage",
        USAGE.format(repo_id=options.repo_id),
    ]
    if report:
        sections += ["## Official parity", PARITY_STATEMENT + f"\n\nSource: `{report.get('source')}`."]
        summary = report.get("summary")
        if summary:
            sections.append("\n".join(f"- {line}" for line in summary))
    if train:
        sections += [
            "## Training",
            f"Trained with `inf-llava train` (stage `{train.get('stage')}`); the saved `train_config.yaml`:",
            _recipe_table(train),
            "<details><summary>train_config.yaml</summary>\n\n```yaml\n"
            + yaml.safe_dump(train, sort_keys=False).rstrip("\n")
            + "\n```\n\n</details>",
        ]
    if options.eval_metrics:
        sections += [
            "## Evaluation",
            "Scored by `inf-llava eval run` with the official scoring (lmms-eval, July 2024, unless the scoring column "
            "says otherwise), next to the paper's Table 1:",
            _eval_table(options.eval_metrics),
        ]
    if model_dir.existing_card:
        notes = _strip_front_matter(model_dir.existing_card.read_text(encoding="utf-8")).strip()
        if notes:
            sections += ["## Notes from the model directory", _demote_headings(notes)]
    sections += [
        "## Licence",
        f"`{options.license}`"
        + (
            "; a model built from pretrained backbones also carries their licences"
            + (f" ({', '.join(f'`{b}`' for b in base_models)})" if base_models else "")
            + "."
        ),
        "## Citation",
        f"```bibtex\n{CITATION}\n```",
    ]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n\n".join(sections) + "\n")


def _demote_headings(markdown: str) -> str:
    """Nest a whole card under one section: every heading one level deeper."""
    return re.sub(r"^(#{1,5}) ", r"#\1 ", markdown, flags=re.MULTILINE)


USAGE = """```python
import inf_llava  # registers model_type "inf_llava" with the transformers Auto classes
from inf_llava import InfLlavaForConditionalGeneration, InfLlavaProcessor
from PIL import Image

processor = InfLlavaProcessor.from_pretrained("{repo_id}")
model = InfLlavaForConditionalGeneration.from_pretrained("{repo_id}")
messages = [{{"role": "user", "content": [{{"type": "image"}}, {{"type": "text", "text": "Describe the image."}}]}}]
prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
inputs = processor(images=[Image.open("photo.jpg")], text=prompt, return_tensors="pt")
out = model.generate(**inputs, max_new_tokens=64, do_sample=False, eos_token_id=processor.stop_token_ids())
print(processor.decode(out[0, inputs["input_ids"].shape[1] :]))
```

Or from the command line: `pip install inf-llava`, then
`inf-llava ask --model {repo_id} --image photo.jpg --question "..."`."""


__all__ = ["CITATION", "PARITY_STATEMENT", "CardOptions", "build_card", "load_eval_metrics", "parameter_counts"]
