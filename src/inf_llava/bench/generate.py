"""``bench generate``: decode speed of INF-LLaVA vs HF LLaVA on the same LLM (same weights, same prompt, greedy, a
fixed number of new tokens), and INF-LLaVA's batched throughput at several batch sizes."""

from __future__ import annotations

import torch
from PIL import Image

from ..modeling import packed_linear
from ..modeling.inf_llava import InfLlavaForConditionalGeneration
from ..runtime import DTYPES
from .models import BenchSizes, build_models
from .timing import interleaved_median_seconds, median_seconds

PROMPT = "USER: <image>\nDescribe the image in detail. ASSISTANT:"


def _generate(model, inputs, new_tokens: int) -> None:
    # INF-LLaVA as its engine runs it (a static KV cache on CPU, the default elsewhere); HF Llava with its defaults.
    static = isinstance(model, InfLlavaForConditionalGeneration) and model.device.type == "cpu"
    cache = {"cache_implementation": "static"} if static else {}
    model.generate(
        **inputs,
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        do_sample=False,
        eos_token_id=None,
        pad_token_id=0,
        **cache,
    )


def decode_rate(model, inputs, new_tokens: int, repeats: int) -> float:
    """Tokens per second after the prefill: (t(N) - t(1)) / (N - 1) per batch row."""
    with torch.inference_mode():
        full = median_seconds(lambda: _generate(model, inputs, new_tokens), repeats, device=model.device)
        first = median_seconds(lambda: _generate(model, inputs, 1), repeats, device=model.device)
    batch = inputs["input_ids"].shape[0]
    return batch * (new_tokens - 1) / max(full - first, 1e-9)


def packed_lm_decode(sizes: BenchSizes, image: Image.Image, new_tokens: int, repeats: int) -> dict:
    """bf16 decoding on CPU with the LM's linears plain vs packed (``--pack-lm-weights``), timed in turns on one
    model, and whether both produce the same tokens."""
    _, ours, processor, *_ = build_models(sizes, device="cpu", dtype=torch.bfloat16)
    inputs = processor(images=[image], text=PROMPT, return_tensors="pt")
    lm = (ours.model.language_model, ours.lm_head)

    def packed(on: bool) -> None:
        for module in lm:
            if on:
                packed_linear.use_packed_linears(module, max_rows=packed_linear.LM_MAX_ROWS)
            else:
                packed_linear.restore_linears(module)

    def timed(on: bool, tokens: int):
        return lambda: (packed(on), _generate(ours, inputs, tokens))

    with torch.inference_mode():
        tokens = {}
        for on in (False, True):
            packed(on)
            tokens[on] = ours.generate(**inputs, max_new_tokens=new_tokens, do_sample=False, pad_token_id=0)
        seconds = interleaved_median_seconds(
            {
                "plain": timed(False, new_tokens),
                "plain_first": timed(False, 1),
                "packed": timed(True, new_tokens),
                "packed_first": timed(True, 1),
            },
            repeats=repeats,
        )
    packed(False)
    plain_rate = (new_tokens - 1) / max(seconds["plain"] - seconds["plain_first"], 1e-9)
    packed_rate = (new_tokens - 1) / max(seconds["packed"] - seconds["packed_first"], 1e-9)
    return {
        "dtype": "bf16",
        "plain_decode_tok_s": round(plain_rate, 1),
        "packed_decode_tok_s": round(packed_rate, 1),
        "speedup": round(packed_rate / plain_rate, 3),
        "same_tokens": bool(torch.equal(tokens[False], tokens[True])),
    }


def run(
    sizes: BenchSizes | None = None,
    new_tokens: int = 64,
    batch_sizes=(1, 4, 8, 16),
    repeats: int = 3,
    device: str = "cpu",
    dtype: str = "fp32",
) -> dict:
    sizes = sizes or BenchSizes()
    _, ours, ours_proc, _, _, llava, llava_proc = build_models(sizes, device=device, dtype=DTYPES[dtype])
    image = Image.new("RGB", (640, 480), (90, 140, 200))
    ours_inputs = ours_proc(images=[image], text=PROMPT, return_tensors="pt").to(device)
    llava_inputs = llava_proc(images=[image], text=PROMPT, return_tensors="pt").to(device)
    ours_rate = decode_rate(ours, ours_inputs, new_tokens, repeats)
    llava_rate = decode_rate(llava, llava_inputs, new_tokens, repeats)
    batched = []
    for batch in batch_sizes:
        inputs = ours_proc(images=[image] * batch, text=[PROMPT] * batch, return_tensors="pt").to(device)
        with torch.inference_mode():
            seconds = median_seconds(lambda inputs=inputs: _generate(ours, inputs, new_tokens), repeats, device=device)
        batched.append(
            {
                "batch": batch,
                "end_to_end_s": round(seconds, 3),
                "end_to_end_tok_s": round(batch * new_tokens / seconds, 1),  # includes encoding + prefill
                "decode_tok_s": round(decode_rate(ours, inputs, new_tokens, repeats), 1),
            }
        )
    packed = None
    if torch.device(device).type == "cpu" and packed_linear._PACKING:
        packed = packed_lm_decode(sizes, image, new_tokens, repeats)
    for row in batched:
        row["decode_vs_batch1"] = round(row["decode_tok_s"] / batched[0]["decode_tok_s"], 2)
        row["end_to_end_vs_batch1"] = round(row["end_to_end_tok_s"] / batched[0]["end_to_end_tok_s"], 2)
    return {
        "bench": "generate",
        "llm": sizes.__dict__,
        "new_tokens": new_tokens,
        "ours_decode_tok_s": round(ours_rate, 1),
        "llava_decode_tok_s": round(llava_rate, 1),
        "decode_ratio": round(ours_rate / llava_rate, 3),
        "batched": batched,
        "packed_lm_weights": packed,
        "device": device,
        "dtype": dtype,
        "threads": torch.get_num_threads(),
    }
