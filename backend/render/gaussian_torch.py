"""Portable tile rasterizer for Gaussian splats: plain PyTorch (CPU, MPS, CUDA), autograd backward.

Same pipeline and compositing rules as gsplat (see `gaussian_reference` for the rules), vectorised:

1. `bin_gaussians`: each visible Gaussian is listed in every tile its box (`radii`) touches, as gsplat's
   `intersect_tile`; one stable sort by depth, then one stable sort by (camera, tile) gives per-tile lists
   front to back (ties: lower index first, as gsplat's radix sort).
2. `composite_tiles`: tiles are sorted by list length and processed in batches; each batch walks its lists
   in chunks of `gaussians_per_chunk`, evaluating all tile pixels x chunk Gaussians at once, carrying the
   transmittance, and dropping tiles whose pixels are all terminated (early termination). At most
   `evaluations_per_chunk` pixel-Gaussian pairs are alive per step; with autograd on, each step is
   checkpointed (its backward recomputes it), so memory stays bounded in the backward pass as well.

The Gaussian exponent is evaluated in log space and separably: with d = (dx_j, dy_i) per pixel column j and
row i, log(o exp(-sigma)) = [log o - ½ a dx_j²] - b dx_j dy_i - ½ c dy_i², so only two full-size
operations form it.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from .gaussian_projection import ALPHA_THRESHOLD, ProjectedGaussians
from .gaussian_reference import MAX_ALPHA, MIN_TRANSMITTANCE


@dataclasses.dataclass(frozen=True)
class TileBins:
    """Per-tile Gaussian lists of C cameras, tiles numbered (camera, tile row, tile column) row-major."""

    gaussian_ids: Tensor
    """[M] flat Gaussian indices (camera * N + n), grouped by tile, front to back within a tile."""
    offsets: Tensor
    """[C * tiles_y * tiles_x] start of each tile's list in `gaussian_ids`."""
    counts: Tensor
    """[C * tiles_y * tiles_x] length of each tile's list."""
    tiles_x: int
    """Tiles per image row, ceil(width / tile_size)."""
    tiles_y: int
    """Tiles per image column, ceil(height / tile_size)."""


@torch.no_grad()
def bin_gaussians(projected: ProjectedGaussians, width: int, height: int, tile_size: int) -> TileBins:
    """List every visible Gaussian in the tiles its screen-space box touches, front to back per tile."""
    C, N = projected.depths.shape
    tiles_x, tiles_y = math.ceil(width / tile_size), math.ceil(height / tile_size)
    centre = projected.means2d.detach() / tile_size  # [C, N, 2] in tiles
    extent = projected.radii.to(centre.dtype) / tile_size  # [C, N, 2]
    limit = torch.tensor([tiles_x, tiles_y], device=centre.device)  # [2]
    lo = torch.minimum(torch.floor(centre - extent).long().clamp_min(0), limit)  # [C, N, 2] inclusive
    hi = torch.minimum(torch.ceil(centre + extent).long().clamp_min(0), limit)  # [C, N, 2] exclusive
    span = (hi - lo).reshape(C * N, 2)  # [C * N, 2]
    counts = span.prod(-1) * (projected.radii > 0).all(-1).reshape(-1)  # [C * N] tiles per Gaussian

    order = torch.argsort(projected.depths.detach().reshape(-1), stable=True)  # [C * N] front to back
    order = order[counts[order] > 0]  # [V]
    per = counts[order]  # [V]
    owner = torch.repeat_interleave(torch.arange(len(order), device=order.device), per)  # [M]
    local = torch.arange(len(owner), device=order.device) - (torch.cumsum(per, 0) - per)[owner]  # [M]
    gaussian = order[owner]  # [M]
    row_length = span[gaussian, 0]  # [M]
    tile_x = lo.reshape(C * N, 2)[gaussian, 0] + local % row_length  # [M]
    tile_y = lo.reshape(C * N, 2)[gaussian, 1] + local // row_length  # [M]
    key = (gaussian // N * tiles_y + tile_y) * tiles_x + tile_x  # [M]
    key, permutation = torch.sort(key, stable=True)  # [M]
    bounds = torch.searchsorted(key, torch.arange(C * tiles_y * tiles_x + 1, device=key.device))  # [C * tiles + 1]
    return TileBins(gaussian_ids=gaussian[permutation], offsets=bounds[:-1], counts=bounds[1:] - bounds[:-1],
                    tiles_x=tiles_x, tiles_y=tiles_y)


def composite_tiles(
    projected: ProjectedGaussians,
    features: Tensor,  # [C, N, D]
    width: int,
    height: int,
    tile_size: int = 16,
    evaluations_per_chunk: int = 1 << 21,
    gaussians_per_chunk: int = 128,
) -> tuple[Tensor, Tensor]:
    """Alpha-composite projected Gaussians tile by tile.

    Args:
        projected: screen-space Gaussians of C cameras (`radii == 0` are left out).
        features: [C, N, D] per-camera features to composite.
        width, height: image size in pixels.
        tile_size: tile edge in pixels.
        evaluations_per_chunk: pixel-Gaussian pairs evaluated per step (bounds memory).
        gaussians_per_chunk: Gaussians per tile per step (granularity of early termination).

    Returns:
        features [C, H, W, D] (no background) and accumulated alpha [C, H, W, 1].
    """
    C, N, D = features.shape
    bins = bin_gaussians(projected, width, height, tile_size)
    visible = (projected.radii > 0).all(-1)  # [C, N]
    log_opacity = torch.log(torch.where(visible, projected.opacities, 1.0))  # [C, N]
    table = torch.cat([projected.means2d, projected.conics, log_opacity[..., None], features], -1)  # [C, N, 6 + D]
    table = table.reshape(C * N, 6 + D)

    pixels = tile_size * tile_size
    order = torch.argsort(bins.counts, descending=True, stable=True)  # [C * tiles]
    order = order[: int((bins.counts > 0).sum())]  # [T] non-empty tiles, longest list first
    sorted_counts = bins.counts[order].tolist()
    tiles, images, transmittances = [], [], []
    start = 0
    while start < len(order):
        chunk = min(gaussians_per_chunk, sorted_counts[start])
        stop = start + max(1, evaluations_per_chunk // (pixels * chunk))
        image, transmittance = _composite_batch(table, bins, order[start:stop], sorted_counts[start], chunk,
                                                tile_size, width, height)
        tiles.append(order[start:stop])
        images.append(image)
        transmittances.append(transmittance)
        start = stop

    total = C * bins.tiles_y * bins.tiles_x
    image = features.new_zeros(total, pixels, D)  # [C * tiles, P, D]
    transmittance = features.new_ones(total, pixels)  # [C * tiles, P]
    if tiles:
        index = torch.cat(tiles)
        image = image.index_copy(0, index, torch.cat(images))
        transmittance = transmittance.index_copy(0, index, torch.cat(transmittances))
    shape = (C, bins.tiles_y, bins.tiles_x, tile_size, tile_size)
    image = image.reshape(shape + (D,)).permute(0, 1, 3, 2, 4, 5).reshape(
        C, bins.tiles_y * tile_size, bins.tiles_x * tile_size, D)[:, :height, :width]  # [C, H, W, D]
    alpha = 1.0 - transmittance.reshape(shape).permute(0, 1, 3, 2, 4).reshape(
        C, bins.tiles_y * tile_size, bins.tiles_x * tile_size, 1)[:, :height, :width]  # [C, H, W, 1]
    return image, alpha


def _composite_batch(
    table: Tensor,  # [C * N, 6 + D] (x, y, conic xx, xy, yy, log opacity, features)
    bins: TileBins,
    tiles: Tensor,  # [B] flat tile ids
    longest: int,
    chunk: int,
    tile_size: int,
    width: int,
    height: int,
) -> tuple[Tensor, Tensor]:
    """Composite B tiles front to back; returns features [B, P, D] and final transmittance [B, P]."""
    B, P, D = len(tiles), tile_size * tile_size, table.shape[1] - 6
    device, dtype = table.device, table.dtype
    offsets, counts = bins.offsets[tiles], bins.counts[tiles]  # [B]
    origin_x = (tiles % bins.tiles_x * tile_size).to(dtype)  # [B]
    origin_y = (tiles // bins.tiles_x % bins.tiles_y * tile_size).to(dtype)  # [B]
    centre = torch.arange(tile_size, device=device, dtype=dtype) + 0.5  # [S] pixel centres in a tile
    row = torch.arange(P, device=device) // tile_size  # [P]
    column = torch.arange(P, device=device) % tile_size  # [P]
    # pixels outside the image never composite, so they cannot keep a tile from terminating
    done = (origin_y[:, None] + row >= height) | (origin_x[:, None] + column >= width)  # [B, P]
    image = table.new_zeros(B, P, D)  # [B, P, D]
    transmittance = table.new_ones(B, P)  # [B, P]
    slot = torch.arange(chunk, device=device)  # [K]
    # F.threshold keeps x > t: the largest value below 1/255 keeps alpha >= 1/255 exactly, as gsplat
    below = torch.nextafter(torch.tensor(ALPHA_THRESHOLD, dtype=dtype), torch.tensor(0.0, dtype=dtype)).item()
    recompute = torch.is_grad_enabled() and table.requires_grad

    for first in range(0, longest, chunk):
        active = torch.nonzero((counts > first) & ~done.all(-1)).squeeze(1)  # [A]
        if len(active) == 0:
            break
        position = first + slot  # [K]
        in_list = position < counts[active, None]  # [A, K]
        slots = torch.where(in_list, offsets[active, None] + position, 0)  # [A, K] into bins.gaussian_ids
        gaussians = table[bins.gaussian_ids[slots]]  # [A, K, 6 + D]
        origin = torch.stack([origin_x[active], origin_y[active]], -1)  # [A, 2]
        start = torch.where(done[active], 0.0, transmittance[active])  # [A, P] finished pixels take nothing
        step = (gaussians, in_list, origin, start, centre, below)
        # the backward pass recomputes each step instead of keeping ~10 [A, P, K] tensors per step alive
        contribution, last, taken, finished = checkpoint(_composite_step, *step, use_reentrant=False) \
            if recompute else _composite_step(*step)
        image = image.index_add(0, active, contribution)
        transmittance = transmittance.index_copy(0, active, torch.where(taken, last, transmittance[active]))
        done = done.index_copy(0, active, done[active] | finished)
    return image, transmittance


def _composite_step(
    gaussians: Tensor,  # [A, K, 6 + D]
    in_list: Tensor,  # [A, K] bool, False for padding
    origin: Tensor,  # [A, 2] tile corners in pixels
    start: Tensor,  # [A, P] transmittance before this step (0 for finished pixels)
    centre: Tensor,  # [S] pixel centres within a tile, S * S = P
    below: float,  # largest value below the alpha threshold
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Composite K Gaussians (front to back) over the P pixels of A tiles.

    Returns:
        features [A, P, D] added by this step, transmittance after its last kept Gaussian [A, P], whether any
        Gaussian was kept [A, P], whether the pixel terminated [A, P].
    """
    A, K = in_list.shape
    mean_x = gaussians[..., 0] - origin[:, 0, None]  # [A, K] tile-local
    mean_y = gaussians[..., 1] - origin[:, 1, None]  # [A, K]
    conic_xx, conic_xy, conic_yy = gaussians[..., 2], gaussians[..., 3], gaussians[..., 4]  # [A, K]
    log_opacity = torch.where(in_list, gaussians[..., 5], -torch.inf)  # [A, K] padding: alpha 0

    dx = mean_x[:, None, :] - centre[None, :, None]  # [A, S, K] per pixel column
    dy = mean_y[:, None, :] - centre[None, :, None]  # [A, S, K] per pixel row
    along_x = log_opacity[:, None, :] - 0.5 * conic_xx[:, None, :] * dx * dx  # [A, S, K]
    along_y = -0.5 * conic_yy[:, None, :] * dy * dy  # [A, S, K]
    cross = -conic_xy[:, None, :] * dx  # [A, S, K]
    log_alpha = torch.addcmul(along_x[:, None], cross[:, None], dy[:, :, None]) + along_y[:, :, None]  # [A, S, S, K]
    raw = torch.exp(log_alpha.reshape(A, -1, K))  # [A, P, K] o exp(-sigma)
    alpha = F.threshold(raw, below, 0.0).clamp_max(MAX_ALPHA)  # [A, P, K] alpha >= 1/255 kept
    clear = 1.0 - alpha  # [A, P, K]

    after = start[..., None] * torch.cumprod(clear, dim=-1)  # [A, P, K] transmittance after each Gaussian
    kept = F.threshold(after, MIN_TRANSMITTANCE, 0.0)  # [A, P, K] 0 from the terminating Gaussian on (a prefix)
    weights = alpha / clear * kept  # [A, P, K] alpha T_before where kept, else 0
    bound = after.new_full((A, after.shape[1], 1), -MIN_TRANSMITTANCE)  # [A, P, 1]
    taken = torch.searchsorted(-after.detach(), bound)  # [A, P, 1] number kept (after is non-increasing)
    last = after.gather(-1, (taken - 1).clamp_min(0)).squeeze(-1)  # [A, P]
    contribution = torch.bmm(weights, gaussians[..., 6:])  # [A, P, D]
    return contribution, last, taken[..., 0] > 0, after[..., -1].detach() <= MIN_TRANSMITTANCE
