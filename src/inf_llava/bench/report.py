"""Write ``docs/performance.md``, its chart and the raw JSON from benchmark results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..jsonl import atomic_write_text


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    encodes = results.get("encode", [])
    if encodes:
        labels = [f"{_encode_label(r)}\n{r['layers']} layers" for r in encodes]
        x = range(len(encodes))
        axes[0].bar([i - 0.2 for i in x], [r["reference_s"] for r in encodes], 0.4, label="official computation")
        axes[0].bar([i + 0.2 for i in x], [r["ours_s"] for r in encodes], 0.4, label="inf-llava")
        axes[0].set_xticks(list(x), labels)
        axes[0].set_ylabel("seconds per image")
        shape = _shape(encodes[0])
        axes[0].set_title(f"image encoder (width {shape['width']}, {_patches(shape)} patches)")
        axes[0].legend()
    tokens = results.get("tokens")
    if tokens:
        rows = tokens["rows"]
        names = [r["image"] for r in rows]
        axes[1].plot(names, [r["next_prefill_s"] for r in rows], "o-", label="LLaVA-NeXT (AnyRes)")
        axes[1].plot(
            names,
            [r["ours_prefill_s"] for r in rows],
            "o-",
            label=f"INF-LLaVA ({rows[0]['ours_visual_tokens']} tokens)",
        )
        axes[1].set_ylabel("LLM prefill seconds")
        axes[1].set_title("prefill vs image size (same LLM)")
        axes[1].tick_params(axis="x", rotation=30)
        axes[1].legend()
    gen = results.get("generate")
    if gen:
        rows = gen["batched"]
        axes[2].bar([str(r["batch"]) for r in rows], [r["decode_tok_s"] for r in rows])
        axes[2].set_xlabel("batch size")
        axes[2].set_ylabel("decode tokens / s")
        axes[2].set_title("batched decoding")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def targets(results: dict[str, Any]) -> list[list[Any]]:
    """The performance targets of the project and whether these results meet them."""
    rows: list[list[Any]] = []
    encodes = {r["dtype"]: r for r in results.get("encode", []) if not r.get("compiled")}  # eager rows by dtype
    if "fp32" in encodes:
        r = encodes["fp32"]
        rows.append(
            ["encode speedup (fp32, equal outputs)", ">= 1.3", r["speedup"], r["speedup"] >= 1.3 and r["equal_outputs"]]
        )
    if "bf16" in encodes and "speedup_vs_fp32" in encodes["bf16"]:
        r = encodes["bf16"]
        rows.append(["encode bf16 vs fp32", ">= 3", r["speedup_vs_fp32"], r["speedup_vs_fp32"] >= 3])
    for r in results.get("encode", []):
        rows.append(
            [
                f"encode fraction of peak ({_encode_label(r)})",
                ">= 0.85",
                r["fraction_of_peak"],
                r["fraction_of_peak"] >= 0.85,
            ]
        )
    tokens = results.get("tokens")
    if tokens:
        big = [r for r in tokens["rows"] if _pixels(r["image"]) >= 480 * 640]
        if big:
            worst = min(r["prefill_speedup"] for r in big)
            rows.append(["prefill vs LLaVA-NeXT, images >= 480x640", ">= 3.5", worst, worst >= 3.5])
    gen = results.get("generate")
    if gen:
        rows.append(["decode tokens/s vs HF Llava", ">= 0.95", gen["decode_ratio"], gen["decode_ratio"] >= 0.95])
        b8 = [r for r in gen["batched"] if r["batch"] == 8]
        if b8:
            rows.append(
                [
                    "batch-8 decode throughput vs batch 1",
                    ">= 3",
                    b8[0]["decode_vs_batch1"],
                    b8[0]["decode_vs_batch1"] >= 3,
                ]
            )
    return rows


def _shape(row: dict[str, Any]) -> dict[str, Any]:
    """The benchmarked encoder's shape as the row recorded it (older rows: the bench's default, the official one)."""
    if "shape" in row:
        return row["shape"]
    from .encode import encoder_config, encoder_shape

    return encoder_shape(encoder_config(layers=2))


def _default_views() -> dict[str, int]:
    from ..configuration import OFFICIAL_GEOMETRY

    return {"reference": 2 * OFFICIAL_GEOMETRY.num_crops + 1, "ours": OFFICIAL_GEOMETRY.num_crops + 1}


def _patches(shape: dict[str, Any]) -> str:
    return f"{shape['patches_per_side']}x{shape['patches_per_side']}"


def _shape_text(row: dict[str, Any]) -> str:
    s = _shape(row)
    grid = "x".join(str(n) for n in s["grid"])
    return (
        f"Tower of width {s['width']} with {_patches(s)} patches per view and {s['heads']} heads of dim "
        f"{s['head_dim']} (by default the released model's vision tower; random weights), {grid} grid, "
        f"DEM, mean fusion and `{s['projector']}` projector to {s['lm_width']}."
    )


def _packed_lm_line(packed: dict[str, Any] | None) -> list[str]:
    if not packed:
        return []
    same = "the same tokens" if packed["same_tokens"] else "**different tokens**"
    return [
        f"- bf16 on CPU with `--pack-lm-weights` (the LM's linears multiply by weights packed once for oneDNN): "
        f"{packed['packed_decode_tok_s']} vs {packed['plain_decode_tok_s']} tokens/s ({packed['speedup']}x), {same}."
    ]


def _cpu_name(machine: dict[str, Any]) -> str:
    cpu = machine.get("cpu", "an unnamed CPU")
    isa = machine.get("cpu_matrix_isa")
    return (
        f"{cpu} ({isa}), {machine.get('threads', '?')} threads"
        if isa
        else f"{cpu}, {machine.get('threads', '?')} threads"
    )


def _linear_section(results: dict[str, Any], machine: dict[str, Any]) -> list[str]:
    """The pre-packed bf16 linears: per GEMM and for the whole encoder, with the exactness verdicts of this CPU."""
    linear = results.get("linear")
    if not linear:
        return []
    isa = linear.get("cpu_matrix_isa", machine.get("cpu_matrix_isa", "?"))
    encoder = next((r for r in results.get("encode", []) if "packed_linears_speedup" in r), None)
    lines = [
        "## Pre-packed bf16 linears (CPU)",
        "",
        f"Measured on {_cpu_name(machine)}. In bf16 CPU inference `PackedLinear` multiplies by a weight packed once "
        "for oneDNN instead of `F.linear`'s per-call reorder, but only for the (shape, row count) pairs where this "
        "CPU verified the packed kernel to give `F.linear`'s bits (the first call of each pair computes both and "
        "returns `F.linear`'s); a shape that ever differs, or a CPU without the kernel, keeps `F.linear`. So outputs "
        "are `nn.Linear`'s on every CPU, and only the speed differs. `exact` is this CPU's verdict; `packed ms` is "
        "the packed kernel's time whether or not the model uses it. The sides are timed in turns.",
        "",
        _table(
            ["GEMM", "rows", "in", "out", "exact here", "F.linear ms", "packed ms", "speedup"],
            [
                [
                    r["name"],
                    r["rows"],
                    r["in"],
                    r["out"],
                    "yes" if r.get("exact") else "**no**",
                    r.get("plain_ms", ""),
                    r.get("packed_ms", r.get("packed_kernel", "")),
                    r.get("speedup", ""),
                ]
                for r in linear["rows"]
            ],
        ),
        "",
    ]
    if encoder:
        used, total = encoder.get("packed_layers", ["?", "?"])
        lines += [
            f"Whole encoder ({encoder['layers']} layers, bf16, eager): {encoder['packed_linears_speedup']}x faster "
            f"with the packed linears than with plain `nn.Linear` ({encoder['ours_s']} s vs "
            f"{encoder['plain_linears_s']} s; {used} of {total} linear layers took the packed path).",
            "",
        ]
    lines += [
        "By CPU kind: on AVX512-BF16 CPUs without AMX (the AMD EPYC these numbers come from unless the machine "
        f"line says otherwise; this run: {isa}) the released model's shapes above verified exact, while some small "
        "shapes (64 inputs, as in the tiny test models) differ in about 1e-4 of their outputs and keep `F.linear`. "
        "On Intel CPUs with AMX a CLIP-L 1024 -> 1024 projection was reported to differ (issue 16): such shapes keep "
        "`F.linear` there; whether the packed kernel pays on AMX has not been measured in this project (no AMX "
        "machine was available): `inf-llava bench linear` measures it on any CPU. CPUs without AVX512 have no packed "
        "bf16 kernel in this torch build; the path stays off there. `INF_LLAVA_PACKED_WEIGHTS=0` turns it off.",
        "",
    ]
    return lines


def _encode_label(row: dict[str, Any]) -> str:
    return row["dtype"] + (", torch.compile" if row.get("compiled") else "")


def _pixels(image: str) -> int:
    height, width = (int(v) for v in image.split("x"))
    return height * width


def write(results: dict[str, Any], docs_dir: Path) -> Path:
    """Raw JSON, chart and markdown into ``docs_dir``; returns the markdown path."""
    docs_dir = Path(docs_dir)
    atomic_write_text(docs_dir / "performance.json", json.dumps(results, indent=2) + "\n")
    chart(results, docs_dir / "img" / "performance.png")
    machine = results.get("machine", {})
    command = results.get("command", "make bench (inf-llava bench all --output docs)")
    device = next((r.get("device") for r in results.get("encode", [])), None) or "cpu"
    parts = [
        "# Performance" + (" on a GPU" if device.startswith("cuda") else ""),
        "",
        f"Generated by `{command}`; raw numbers in `performance.json`. Every comparison runs both sides in one "
        "process on the same weights and inputs, so ratios hold even where absolute times vary with machine load.",
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in machine.items()),
        "",
        f"Every number on this page comes from that machine: {_cpu_name(machine)}.",
        "",
        "![benchmarks](img/performance.png)",
        "",
    ]
    goal_rows = targets(results)
    if goal_rows:
        parts += [
            "## Targets",
            "",
            _table(["target", "goal", "measured", "met"], [[*r[:3], "yes" if r[3] else "**no**"] for r in goal_rows]),
            "",
        ]
    encodes = results.get("encode", [])
    if encodes:
        views = encodes[0]["tower_views"] if "tower_views" in encodes[0] else _default_views()
        parts += [
            "## Image encoder vs the official computation",
            "",
            _shape_text(encodes[0]) + " Reference: the official `encode_images` written straightforwardly "
            f"({views['reference']} tower calls keeping every hidden state, per-window DEM loops). Ours: one tower "
            f"call over the {views['ours']} views that reach the output, the tower built up to layer -2, the DEM's "
            "centre rows only; in bf16 on CPU the "
            "linear layers multiply by weights pre-packed once for oneDNN where this CPU verified that to give the "
            "same bits (`modeling/packed_linear.py`, below) "
            "and the tower's attention runs as two matmuls around a softmax over cache-sized blocks of heads "
            "(`modeling/attention.py`). The sides are timed in turns. `max_rel_err` is the max absolute difference "
            "over the max absolute value of the reference output. In bf16 the fraction of peak is lower than in fp32: "
            "the GEMMs gain about 4x from the bf16 units, but the softmax, the small-head-dim attention products, GELU "
            "and LayerNorm gain much less, so they take a larger share of the time. The `torch.compile` row is "
            "`InfLlavaImageEncoder.compile(freeze=True)` (`--compile` in the CLI and the server): inductor freezes the "
            "weights (pre-packed like eager's), fuses bias and residual additions into the GEMMs "
            "and LayerNorm/GELU into single passes, and keeps the blocked attention as one opaque op; it rounds "
            "fewer intermediates to bf16 than eager, so it agrees with eager bf16 within the bf16 tolerance, not "
            "bit for bit. Its one-time compile cost is the `compile s` column.",
            "",
            _table(
                [
                    "dtype",
                    "mode",
                    "layers",
                    "reference s",
                    "ours s",
                    "speedup",
                    "max rel err",
                    "achieved GFLOP/s",
                    "peak GFLOP/s",
                    "fraction of peak",
                    "vs ours fp32",
                    "compile s",
                ],
                [
                    [
                        r["dtype"],
                        "torch.compile" if r.get("compiled") else "eager",
                        r["layers"],
                        r["reference_s"],
                        r["ours_s"],
                        r["speedup"],
                        r["max_rel_err"],
                        r["achieved_gflops"],
                        r["peak_gflops"],
                        r["fraction_of_peak"],
                        r.get("speedup_vs_fp32", ""),
                        r.get("compile_s", ""),
                    ]
                    for r in encodes
                ],
            ),
            "",
        ]
    parts += _linear_section(results, machine)
    tokens = results.get("tokens")
    if tokens:
        parts += [
            "## Visual tokens and prefill vs LLaVA-NeXT (AnyRes)",
            "",
            f"Same Llama on both sides ({tokens['llm']}). Prefill = the language model's forward over the spliced "
            "prompt; forward = tower + LLM.",
            "",
            _table(
                [
                    "image (HxW)",
                    "INF-LLaVA tokens",
                    "NeXT tokens",
                    "INF-LLaVA prefill s",
                    "NeXT prefill s",
                    "prefill speedup",
                    "INF-LLaVA forward s",
                    "NeXT forward s",
                ],
                [
                    [
                        r["image"],
                        r["ours_visual_tokens"],
                        r["next_visual_tokens"],
                        r["ours_prefill_s"],
                        r["next_prefill_s"],
                        r["prefill_speedup"],
                        r["ours_forward_s"],
                        r["next_forward_s"],
                    ]
                    for r in tokens["rows"]
                ],
            ),
            "",
        ]
        if all("dynamic_grid" in r for r in tokens["rows"]):
            parts += [
                "### Fixed 3x3 vs dynamic grids (docs/dynamic-grids.md)",
                "",
                "Same weights; the dynamic model picks a grid per image within the official budget of 9 sub-images. "
                "Kept = share of the image's pixels that survive; canvas = share of the high-resolution canvas that "
                "is image, not padding.",
                "",
                _table(
                    [
                        "image (HxW)",
                        "fixed grid",
                        "fixed views",
                        "fixed kept",
                        "fixed canvas",
                        "dynamic grid",
                        "dynamic tokens",
                        "dynamic views",
                        "dynamic kept",
                        "dynamic canvas",
                        "fixed forward s",
                        "dynamic forward s",
                    ],
                    [
                        [
                            r["image"],
                            r["fixed_grid"],
                            r["fixed_tower_views"],
                            r["fixed_kept_share"],
                            r["fixed_canvas_share"],
                            r["dynamic_grid"],
                            r["dynamic_visual_tokens"],
                            r["dynamic_tower_views"],
                            r["dynamic_kept_share"],
                            r["dynamic_canvas_share"],
                            r["ours_forward_s"],
                            r["dynamic_forward_s"],
                        ]
                        for r in tokens["rows"]
                    ],
                ),
                "",
            ]
    gen = results.get("generate")
    if gen:
        parts += [
            "## Decoding",
            "",
            f"Greedy, {gen['new_tokens']} new tokens, same LLM and weights. Decode rate = (t(N) - t(1)) / (N - 1).",
            "",
            f"- INF-LLaVA {gen['ours_decode_tok_s']} tokens/s vs HF `LlavaForConditionalGeneration` "
            f"{gen['llava_decode_tok_s']} tokens/s (ratio {gen['decode_ratio']}).",
            *_packed_lm_line(gen.get("packed_lm_weights")),
            "",
            _table(
                ["batch", "decode tok/s", "vs batch 1", "end-to-end tok/s", "vs batch 1"],
                [
                    [
                        r["batch"],
                        r["decode_tok_s"],
                        r["decode_vs_batch1"],
                        r["end_to_end_tok_s"],
                        r["end_to_end_vs_batch1"],
                    ]
                    for r in gen["batched"]
                ],
            ),
            "",
        ]
    if not device.startswith("cuda"):
        gpu = docs_dir / "gpu" / "performance.md"
        parts += [
            "## On a GPU",
            "",
            "The same benchmarks on a GPU (bf16): [gpu/performance.md](gpu/performance.md)."
            if gpu.exists()
            else "Not measured yet: no GPU has been lent to this project's sessions. `scripts/device-bench.sh` is the "
            "prepared run (`inf-llava bench all --device cuda --dtype bf16`); it writes `docs/gpu/`.",
            "",
        ]
    if results.get("notes"):
        parts += ["## Notes", "", *results["notes"], ""]
    path = docs_dir / "performance.md"
    atomic_write_text(path, "\n".join(parts))
    return path
