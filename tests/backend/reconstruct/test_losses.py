"""Losses and metrics: SSIM's fast path against the plain reference and scikit-image, the simple terms by value."""

from __future__ import annotations

import math

import pytest
import torch
from skimage.metrics import structural_similarity

from backend.reconstruct import losses


def images(seed: int, shape=(2, 24, 20, 3), dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    a = torch.rand(shape, generator=generator, dtype=dtype)
    b = (a + 0.2 * torch.randn(shape, generator=generator, dtype=dtype)).clamp(0, 1)
    return a, b


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ssim_fast_path_matches_reference_and_scikit_image(seed) -> None:
    a, b = images(seed)
    fast, reference = losses.ssim_map(a, b), losses.ssim_map_reference(a, b)
    assert fast.shape == (2, 14, 10, 3)
    torch.testing.assert_close(fast, reference, rtol=0, atol=1e-12)
    for i in range(2):
        expected = structural_similarity(a[i].numpy(), b[i].numpy(), data_range=1.0, channel_axis=-1,
                                         gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
        assert float(fast[i].mean()) == pytest.approx(expected, abs=1e-10)


def test_ssim_gradient_matches_reference() -> None:
    a, b = images(4, (1, 16, 16, 3))
    a1, a2 = a.clone().requires_grad_(), a.clone().requires_grad_()
    losses.dssim(a1, b).backward()
    (1 - losses.ssim_map_reference(a2, b).mean()).backward()
    torch.testing.assert_close(a1.grad, a2.grad, rtol=0, atol=1e-12)


def test_dssim_is_zero_for_equal_images_and_positive_otherwise() -> None:
    a, b = images(5)
    assert float(losses.dssim(a, a)) == pytest.approx(0.0, abs=1e-12)
    assert float(losses.dssim(a, b)) > 0.05


def test_simple_terms_by_value() -> None:
    prediction = torch.full((1, 12, 12, 3), 0.5)
    target = torch.full((1, 12, 12, 3), 0.4)
    assert float(losses.l1(prediction, target)) == pytest.approx(0.1, abs=1e-6)
    assert float(losses.psnr(prediction, target)[0]) == pytest.approx(20.0, abs=1e-4)  # mse 0.01
    mask = torch.zeros(1, 12, 12)
    mask[:, :6] = 1
    target_masked = target.clone()
    target_masked[:, 6:] = 0.0  # outside the mask: ignored by the masked PSNR
    assert float(losses.psnr(prediction, target_masked, mask)[0]) == pytest.approx(20.0, abs=1e-4)
    alpha = torch.full((1, 12, 12, 1), 0.25)
    assert float(losses.mask_loss(alpha, mask)) == pytest.approx((0.75 + 0.25) / 2)
    background = torch.tensor([1.0, 1.0, 1.0])
    features = torch.zeros(1, 12, 12, 5)
    assert float(losses.stable_loss(features, torch.zeros(1, 12, 12, 1), torch.ones(1, 12, 12, 3), background)) == 0


def test_binding_regularisers_are_zero_inside_the_thresholds() -> None:
    means = torch.tensor([[0.5, 0.0, 0.0], [3.0, 0.0, 0.0]])
    scales = torch.log(torch.tensor([[0.5, 0.1, 0.1], [1.6, 0.1, 0.1]]))
    position, scale = losses.binding_regularisers(means, scales, 1.0, 0.6)
    assert float(position) == pytest.approx((0.0 + 2.0) / 2)
    assert float(scale) == pytest.approx((0.0 + 1.0) / 2)


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="one shape"):
        losses.l1(torch.zeros(1, 4, 4, 3), torch.zeros(1, 4, 5, 3))
    with pytest.raises(ValueError, match="at least 11"):
        losses.ssim(torch.zeros(1, 8, 8, 3), torch.zeros(1, 8, 8, 3))
    assert math.isfinite(float(losses.psnr(torch.zeros(1, 4, 4, 3), torch.zeros(1, 4, 4, 3))[0]))
