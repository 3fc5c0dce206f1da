"""A from-spec reference of the official `encode_images` (spec section 4): fp32 bicubic resize to the high-resolution
size, tiles + polyphase views + a bicubic base view (19 views for 3x3), each through the *full* tower in a separate
call with every hidden state kept, `hidden_states[layer]` without the class token, the reference DEM, the mean with
the base view, then the projector."""

import torch
import torch.nn.functional as F

from .official_dem import polyphase_split, tile_split


def official_encode_images(images, tower, spatial_embed, projector, n=3, view=None, layer=-2, fusion="mean"):
    view = view or tower.config.image_size
    big_size = n * view
    d_in = images.dtype
    big = F.interpolate(images.float(), size=(big_size, big_size), mode="bicubic", align_corners=False).to(d_in)
    small = F.interpolate(images.float(), size=(view, view), mode="bicubic", align_corners=False).to(d_in)
    views = tile_split(big, n) + polyphase_split(big, n) + [small]
    feats = []
    with torch.no_grad():
        for v in views:
            out = tower(pixel_values=v.to(next(tower.parameters()).dtype), output_hidden_states=True)
            feats.append(out.hidden_states[layer][:, 1:].to(d_in))
    dem = spatial_embed(feats[: 2 * n * n], n)
    f1 = feats[-1]
    fused = torch.stack([f1, dem], dim=-1).mean(dim=-1) if fusion == "mean" else f1 + dem
    return projector(fused)
