"""Procedural talking-head motion: reproducible, smooth, and doing what it says."""

from __future__ import annotations

import numpy as np
import pytest

from backend.flame.motion import talking_head


def test_reproducible_for_a_seed_and_different_across_seeds() -> None:
    a, b, c = (talking_head(80, 25, n_expression=20, seed=s) for s in (3, 3, 4))
    np.testing.assert_array_equal(a.jaw, b.jaw)
    np.testing.assert_array_equal(a.expression, b.expression)
    assert not np.allclose(a.jaw, c.jaw)


def test_smooth_and_in_plausible_ranges() -> None:
    seq = talking_head(250, 25, n_shape=10, n_expression=30, seed=0)
    assert seq.jaw[:, 0].min() >= 0 and 0.05 < seq.jaw[:, 0].max() <= 0.22  # mouth opens, never hyper-extends
    assert np.abs(seq.rotation + seq.neck).max() < 0.5  # head turns stay within ~30 degrees
    for name in ("rotation", "neck", "eyes", "translation"):
        step = np.abs(np.diff(getattr(seq, name), axis=0)).max()
        assert step < 0.05, f"{name} jumps by {step} between frames"
    assert seq.eyelids.shape == (250, 2) and seq.eyelids.max() > 0.9  # at least one full blink in 10 s
    assert (seq.eyelids[:, 0] > 0.5).mean() < 0.2  # eyes mostly open


def test_same_motion_at_any_frame_rate() -> None:
    slow, fast = talking_head(25, 25, seed=2), talking_head(50, 50, seed=2)
    np.testing.assert_allclose(slow.jaw, fast.jaw[::2], atol=1e-6)


def test_identity_and_bad_arguments() -> None:
    shape = np.linspace(-1, 1, 7)
    np.testing.assert_allclose(talking_head(5, shape=shape).shape, shape, atol=1e-6)
    with pytest.raises(ValueError, match="frames"):
        talking_head(0)
