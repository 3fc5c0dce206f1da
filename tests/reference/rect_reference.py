"""The official INF-LLaVA computation (spec sections 4-5.5) generalised from an ``n x n`` grid to ``n_h x n_w``, written
as straightforwardly as the square reference (``inf_llava.reference``): lists of sub-images with explicit index
arithmetic, one vision-tower call per view with every hidden state kept, Python loops over DEM windows, a
zeros-initialised polyphase merge and the fp32 bilinear resize of the ``(n_h p, n_w p)`` map to ``(p, p)``.

Only the grid changes: tile ``i * n_w + j`` is rows ``i h .. (i + 1) h - 1`` and columns ``j w .. (j + 1) w - 1``;
strided view ``i * n_w + j`` is ``x[i::n_h, j::n_w]``; the base view is the bicubic resize of the whole
``(n_h S, n_w S)`` canvas to ``(S, S)``. For ``n_h == n_w`` every function here computes what the square reference
computes. Parameter names are the official checkpoints' (it subclasses the square reference module).
"""

import torch
import torch.nn.functional as F

from inf_llava.reference import SpatialEmbed


def tile_split(x, n_h, n_w):  # [b, C, H, W] -> list of n_h * n_w tiles, index i * n_w + j
    H, W = x.shape[-2:]
    h, w = H // n_h, W // n_w
    return [x[:, :, i * h : (i + 1) * h, j * w : (j + 1) * w] for i in range(n_h) for j in range(n_w)]


def polyphase_split(x, n_h, n_w):  # index i * n_w + j -> x[:, :, i::n_h, j::n_w]
    return [x[:, :, i::n_h, j::n_w] for i in range(n_h) for j in range(n_w)]


def tile_merge(items, n_h, n_w):  # list of [b, h, w, d] -> [b, n_h h, n_w w, d]
    rows = [torch.cat(items[i * n_w : (i + 1) * n_w], dim=2) for i in range(n_h)]
    return torch.cat(rows, dim=1)


def polyphase_merge(items, n_h, n_w):
    b, h, w, d = items[0].shape
    out = torch.zeros(b, n_h * h, n_w * w, d, dtype=torch.float32).to(items[0].device).to(items[0].dtype)
    for i in range(n_h):
        for j in range(n_w):
            out[:, i::n_h, j::n_w, :] = items[i * n_w + j]
    return out


class RectSpatialEmbed(SpatialEmbed):
    """The official ``SpatialEmbed`` forward on an ``n_h x n_w`` grid (same parameters)."""

    def forward(self, feats, n_h, n_w):
        feats = list(feats)
        b, hw, d = feats[0].shape
        s = int(hw**0.5)
        feats = [f.reshape(b, s, s, d) for f in feats]
        k = n_h * n_w
        crop_feats, stride_feats = feats[:k], feats[k : 2 * k]
        cm = tile_merge(crop_feats, n_h, n_w)
        sm = polyphase_merge(stride_feats, n_h, n_w)
        cm_p, sm_p = cm.permute(0, 3, 1, 2), sm.permute(0, 3, 1, 2)
        a_list = []  # global as query: contiguous windows of SM attend to the matching window of CM
        for q_win, kv_win in zip(tile_split(sm_p, n_h, n_w), tile_split(cm_p, n_h, n_w)):
            q = q_win.flatten(2).transpose(1, 2)
            kv = kv_win.flatten(2).transpose(1, 2)
            a_list.append(self.attention(q, kv, kv).reshape(b, s, s, d))
        b_list = []  # local as query: strided phases of CM attend to the matching phase of SM
        for q_win, kv_win in zip(polyphase_split(cm_p, n_h, n_w), polyphase_split(sm_p, n_h, n_w)):
            q = q_win.flatten(2).transpose(1, 2)
            kv = kv_win.flatten(2).transpose(1, 2)
            b_list.append(self.attention(q, kv, kv).reshape(b, s, s, d))
        s_prime = tile_merge(a_list, n_h, n_w)
        c_prime = polyphase_merge(b_list, n_h, n_w)
        fuse = torch.cat([self.ffn_crop(c_prime), self.ffn_stride(s_prime)], dim=-1)
        fuse = self.ln_fuse(fuse + s_prime + c_prime)
        out = F.interpolate(fuse.permute(0, 3, 1, 2).float(), size=(s, s), mode="bilinear", align_corners=False)
        return out.to(feats[0].dtype).permute(0, 2, 3, 1).reshape(b, hw, d)


def rect_encode_images(canvas, tower, spatial_embed, projector, n_h, n_w, layer=-2):
    """Official ``encode_images`` for one grid: ``canvas`` is ``[b, 3, n_h S, n_w S]``; tiles + strided views + the
    bicubic base view, each through the full tower separately, the DEM, the mean with the base view, the projector."""
    view = tower.config.image_size
    big = F.interpolate(canvas.float(), size=(n_h * view, n_w * view), mode="bicubic", align_corners=False)
    small = F.interpolate(canvas.float(), size=(view, view), mode="bicubic", align_corners=False)
    views = tile_split(big, n_h, n_w) + polyphase_split(big, n_h, n_w) + [small]
    feats = []
    with torch.no_grad():
        for v in views:
            out = tower(pixel_values=v, output_hidden_states=True)
            feats.append(out.hidden_states[layer][:, 1:])
        dem = spatial_embed(feats[: 2 * n_h * n_w], n_h, n_w)
        fused = torch.stack([feats[-1], dem], dim=-1).mean(dim=-1)
        return projector(fused)
