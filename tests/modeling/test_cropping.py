import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from inf_llava import global_crops, local_crops, merge_global, merge_local


def test_global_crop_k_is_strided_slice():
    x = torch.randn(2, 3, 12, 15)
    crops = global_crops(x, (3, 5))
    for i in range(3):
        for j in range(5):
            assert torch.equal(crops[:, i * 5 + j], x[..., i::3, j::5])


def test_local_crops_tile_the_image():
    x = torch.arange(2 * 3 * 12 * 12, dtype=torch.float32).reshape(2, 3, 12, 12)
    tiles = local_crops(x, 3)
    assert tiles.shape == (2, 9, 3, 4, 4)
    covered = torch.zeros(12, 12, dtype=torch.int64)
    for i in range(3):
        for j in range(3):
            tile = tiles[:, 3 * i + j]
            assert torch.equal(tile, x[:, :, 4 * i : 4 * i + 4, 4 * j : 4 * j + 4])
            covered[4 * i : 4 * i + 4, 4 * j : 4 * j + 4] += 1
    assert torch.equal(covered, torch.ones_like(covered))  # every pixel exactly once


def test_official_shape():
    image = torch.randn(1, 3, 1008, 1008)
    assert local_crops(image, 3).shape == (1, 9, 3, 336, 336)
    assert torch.equal(global_crops(image, 3)[:, 4], image[:, :, 1::3, 1::3])


@settings(max_examples=60, deadline=None)
@given(
    n_h=st.integers(1, 4),
    n_w=st.integers(1, 4),
    h=st.integers(1, 5),
    w=st.integers(1, 5),
    lead=st.lists(st.integers(1, 2), max_size=2),
    channels=st.integers(1, 3),
    channels_last=st.booleans(),
)
def test_merges_are_exact_inverses(n_h, n_w, h, w, lead, channels, channels_last):
    shape = (*lead, n_h * h, n_w * w, channels) if channels_last else (*lead, channels, n_h * h, n_w * w)
    x = torch.randn(shape)
    grid = (n_h, n_w)
    for split, merge in ((local_crops, merge_local), (global_crops, merge_global)):
        views = split(x, grid, channels_last=channels_last)
        assert views.shape[len(lead)] == n_h * n_w
        assert torch.equal(merge(views, grid, channels_last=channels_last), x)
    # channels-last and channels-first agree
    if channels_last:
        first = x.movedim(-1, -3)
        assert torch.equal(global_crops(first, grid).movedim(-3, -1), global_crops(x, grid, channels_last=True))


def test_recombined_features_sit_at_their_true_positions():
    # Encode each pixel's (row, col) as its "feature"; after cropping and merging feature maps laid out like the
    # sub-images, every token must come back to its coordinate (paper Eq. 5-6, spec 18.1).
    H = W = 9
    rows, cols = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    coords = torch.stack([rows, cols], dim=-1).float()[None]  # (1, H, W, 2) channels-last
    for split, merge in ((local_crops, merge_local), (global_crops, merge_global)):
        assert torch.equal(merge(split(coords, 3, channels_last=True), 3, channels_last=True), coords)
    strided = global_crops(coords, 3, channels_last=True)
    assert torch.equal(strided[0, 5, 2, 1], torch.tensor([2 * 3 + 1, 1 * 3 + 2], dtype=torch.float32))


def test_bad_sizes_raise():
    import pytest

    with pytest.raises(ValueError, match="cannot be cut into a 3x3 grid"):
        local_crops(torch.randn(1, 3, 10, 9), 3)
    with pytest.raises(ValueError, match="expected"):
        merge_global(torch.randn(1, 8, 3, 2, 2), 3)
