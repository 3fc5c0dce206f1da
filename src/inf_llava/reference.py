"""The official INF-LLaVA image computation, written straightforwardly from the spec (sections 4-5): lists of
sub-images, one vision-tower call per view with every hidden state kept, Python loops over DEM windows, a
zeros-initialised polyphase merge and the fp32 bilinear resize. Parameter names follow the official checkpoints
(``attention.linears.{0..3}``, ``attention.ln``, ``ffn_crop``, ``ffn_stride``, ``ln_fuse``).

It exists to check and to time the package's batched implementation against (tests, ``inf-llava bench encode``);
it is not used by the model.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn


def tile_split(x, n):  # [b, C, H, W] -> list of n*n tiles, index i*n + j
    H, W = x.shape[-2:]
    h, w = H // n, W // n
    return [x[:, :, i * h : (i + 1) * h, j * w : (j + 1) * w] for i in range(n) for j in range(n)]


def polyphase_split(x, n):  # index h*n + w -> x[:, :, h::n, w::n]
    return [x[:, :, h::n, w::n] for h in range(n) for w in range(n)]


def tile_merge(items, n):  # list of [b, h, w, d] -> [b, n h, n w, d]
    rows = [torch.cat(items[i * n : (i + 1) * n], dim=2) for i in range(n)]
    return torch.cat(rows, dim=1)


def polyphase_merge(items, n):
    b, h, w, d = items[0].shape
    out = torch.zeros(b, n * h, n * w, d, dtype=torch.float32).to(items[0].device).to(items[0].dtype)
    for hh in range(n):
        for ww in range(n):
            out[:, hh::n, ww::n, :] = items[hh * n + ww]
    return out


class Attention(nn.Module):
    def __init__(self, h, d):
        super().__init__()
        self.h, self.d_k = h, d // h
        self.linears = nn.ModuleList([nn.Linear(d, d) for _ in range(4)])
        self.ln = nn.LayerNorm(d)

    def forward(self, q_in, k_in, v_in):
        b = q_in.shape[0]
        q, k, v = [
            lin(x).view(b, -1, self.h, self.d_k).transpose(1, 2) for lin, x in zip(self.linears, (q_in, k_in, v_in))
        ]
        scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(self.d_k)
        p = scores.softmax(dim=-1)
        x = torch.matmul(p, v).transpose(1, 2).contiguous().view(b, -1, self.h * self.d_k)
        return self.ln(self.linears[-1](x) + q_in)


class SpatialEmbed(nn.Module):
    def __init__(self, channel=1024, heads=8, ratio=16):
        super().__init__()
        self.attention = Attention(heads, channel)
        mk = lambda: nn.Sequential(
            nn.Linear(channel, channel // ratio), nn.GELU(), nn.Linear(channel // ratio, channel // 2)
        )
        self.ffn_crop = mk()
        self.ffn_stride = mk()
        self.ln_fuse = nn.LayerNorm(channel)

    def forward(self, feats, n=3, out_size=None):
        feats = list(feats)
        b, hw, d = feats[0].shape
        s = int(math.sqrt(hw))
        feats = [f.reshape(b, s, s, d) for f in feats]
        crop_feats, stride_feats = feats[: n * n], feats[n * n : 2 * n * n]
        cm = tile_merge(crop_feats, n)
        sm = polyphase_merge(stride_feats, n)
        cm_p, sm_p = cm.permute(0, 3, 1, 2), sm.permute(0, 3, 1, 2)
        a_list = []
        for q_win, kv_win in zip(tile_split(sm_p, n), tile_split(cm_p, n)):
            q = q_win.flatten(2).transpose(1, 2)
            kv = kv_win.flatten(2).transpose(1, 2)
            a_list.append(self.attention(q, kv, kv).reshape(b, s, s, d))
        b_list = []
        for q_win, kv_win in zip(polyphase_split(cm_p, n), polyphase_split(sm_p, n)):
            q = q_win.flatten(2).transpose(1, 2)
            kv = kv_win.flatten(2).transpose(1, 2)
            b_list.append(self.attention(q, kv, kv).reshape(b, s, s, d))
        s_prime = tile_merge(a_list, n)
        c_prime = polyphase_merge(b_list, n)
        fuse = torch.cat([self.ffn_crop(c_prime), self.ffn_stride(s_prime)], dim=-1)
        fuse = self.ln_fuse(fuse + s_prime + c_prime)
        out = F.interpolate(fuse.permute(0, 3, 1, 2).float(), size=(s, s), mode="bilinear", align_corners=False)
        return out.to(feats[0].dtype).permute(0, 2, 3, 1).reshape(b, hw, d)


def to_package_state_dict(official_sd):
    """Official SpatialEmbed state dict -> DualPerspectiveEnhancement state dict (the package's key table)."""
    from inf_llava.conversion.keys import dem_key_to_package

    return {dem_key_to_package(k): v for k, v in official_sd.items()}


def official_encode_images(images, tower, spatial_embed, projector, n=3, view=None, layer=-2, fusion="mean"):
    """Official ``encode_images`` (spec section 4): fp32 bicubic resize to ``n * view``, tiles + polyphase views + a
    bicubic base view (19 views for n = 3), each through the *full* tower in a separate call with every hidden state
    kept, ``hidden_states[layer]`` without the class token, the DEM, the mean with the base view, the projector."""
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
