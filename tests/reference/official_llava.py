"""A from-spec reference of the official INF-LLaVA inference, written from the spec's prose (sections 4, 8, 10-12),
independently of the package: official preprocessing, ``tokenizer_image_token`` with the ``-200`` sentinel, the
19-call ``encode_images`` (tests/reference/official_encoder.py), the splice of ``prepare_inputs_labels_for_multimodal``
and a plain transformers ``LlamaForCausalLM`` run on ``inputs_embeds``, loaded from the checkpoint's own LLM keys.
"""

import torch
from PIL import Image
from torch import nn
from transformers import CLIPVisionModel, LlamaConfig, LlamaForCausalLM
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

from .official_dem import SpatialEmbed
from .official_encoder import official_encode_images

IMAGE_TOKEN_INDEX = -200
VISION_PREFIX = "model.vision_tower.vision_tower.vision_model."
LLAVA_PROMPT_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)


def official_prompt(question: str) -> str:
    """The exact single-turn ``llama3`` prompt of spec 9.1 (image first, as the official code moves it)."""
    return (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
        + LLAVA_PROMPT_SYSTEM
        + "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n<image>\n"
        + question
        + "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    )


def tokenizer_image_token(prompt: str, tokenizer) -> list[int]:
    """Upstream LLaVA's ``tokenizer_image_token`` (spec 10.2): chunks tokenised separately, BOS kept once."""
    chunks = [tokenizer(chunk).input_ids for chunk in prompt.split("<image>")]
    ids, offset = [], 0
    if chunks and chunks[0] and chunks[0][0] == tokenizer.bos_token_id:
        offset = 1
        ids.append(chunks[0][0])
    separated = []
    for index, chunk in enumerate(chunks):
        if index:
            separated.append([IMAGE_TOKEN_INDEX] * (offset + 1))
        separated.append(chunk)
    for piece in separated:
        ids.extend(piece[offset:])
    return ids


def expand2square(image: Image.Image, color) -> Image.Image:
    width, height = image.size
    if width == height:
        return image
    if width > height:
        canvas = Image.new(image.mode, (width, width), color)
        canvas.paste(image, (0, (width - height) // 2))
        return canvas
    canvas = Image.new(image.mode, (height, height), color)
    canvas.paste(image, ((height - width) // 2, 0))
    return canvas


def official_pixels(image: Image.Image, scale: int, view: int = 336, pad: bool = True) -> torch.Tensor:
    """``process_images`` with ``image_aspect_ratio="pad"``; ``scale=3``: the training path (processor sizes x3 by
    ``double_json_values``), ``scale=1``: the stock processor of the inference scripts. ``(1, 3, S, S)`` fp32."""
    processor = CLIPImageProcessorPil(
        size={"shortest_edge": view * scale}, crop_size={"height": view * scale, "width": view * scale}
    )
    image = image.convert("RGB")
    if pad:
        image = expand2square(image, tuple(int(x * 255) for x in processor.image_mean))
    return torch.from_numpy(processor(image, return_tensors="np")["pixel_values"])


class OfficialLlava(nn.Module):
    """The official model's forward on a checkpoint's official-named weights (fp32 by default)."""

    def __init__(self, weights: dict, config: dict, vision_config, dtype=torch.float32):
        super().__init__()
        self.tower = CLIPVisionModel(vision_config).eval()  # the full tower: every layer, as in the official code
        self.tower.load_state_dict(_strip(weights, VISION_PREFIX), strict=True)
        width = vision_config.hidden_size
        ratio = width // weights["model.spatial_embed.ffn_crop.0.weight"].shape[0]
        self.spatial_embed = SpatialEmbed(width, heads=8, ratio=ratio)
        self.spatial_embed.load_state_dict(_strip(weights, "model.spatial_embed."), strict=True)
        hidden = config["hidden_size"]
        self.mm_projector = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, hidden))
        self.mm_projector.load_state_dict(_strip(weights, "model.mm_projector."), strict=True)
        llama_fields = {k: v for k, v in config.items() if k in LlamaConfig().to_dict() and not k.startswith("_")}
        llama = LlamaConfig(**llama_fields, rope_theta=config["rope_theta"])
        self.llm = LlamaForCausalLM(llama).eval()
        llm_weights = {
            k: v for k, v in weights.items() if k.startswith(("model.layers.", "model.embed_tokens", "model.norm"))
        }
        llm_weights["lm_head.weight"] = weights["lm_head.weight"]
        self.llm.load_state_dict(llm_weights, strict=True)
        self.to(dtype).eval()

    @torch.no_grad()
    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        return official_encode_images(pixels, self.tower, self.spatial_embed, self.mm_projector, n=3)

    @torch.no_grad()
    def inputs_embeds(self, ids: list[int], image_features: torch.Tensor) -> torch.Tensor:
        """``prepare_inputs_labels_for_multimodal`` for one sample: text pieces embedded, features at each -200."""
        cuts = [i for i, t in enumerate(ids) if t == IMAGE_TOKEN_INDEX]
        bounds = [-1, *cuts, len(ids)]
        pieces = [ids[bounds[i] + 1 : bounds[i + 1]] for i in range(len(bounds) - 1)]
        embed = self.llm.get_input_embeddings()
        text = embed(torch.tensor([t for p in pieces for t in p])).split([len(p) for p in pieces])
        parts = []
        for index, piece in enumerate(text):
            parts.append(piece)
            if index < len(cuts):
                parts.append(image_features[index])
        return torch.cat(parts).unsqueeze(0)

    @torch.no_grad()
    def logits(self, ids: list[int], image_features: torch.Tensor) -> torch.Tensor:
        """Full logits of the spliced prompt (``image_features`` from :meth:`encode_images`)."""
        return self.llm(inputs_embeds=self.inputs_embeds(ids, image_features)).logits

    @torch.no_grad()
    def greedy(self, ids: list[int], image_features: torch.Tensor, max_new_tokens: int, eos: list[int]):
        """Greedy decoding without a cache (the full sequence each step); returns (tokens, top-2 logit margins)."""
        embeds = self.inputs_embeds(ids, image_features)
        tokens, margins = [], []
        for _ in range(max_new_tokens):
            logits = self.llm(inputs_embeds=embeds, logits_to_keep=1).logits[0, -1]
            top = logits.topk(2)
            token = int(top.indices[0])
            tokens.append(token)
            margins.append(float(top.values[0] - top.values[1]))
            if token in eos:
                break
            embeds = torch.cat([embeds, self.llm.get_input_embeddings()(torch.tensor([[token]]))], dim=1)
        return tokens, margins


def _strip(weights: dict, prefix: str) -> dict:
    return {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}
