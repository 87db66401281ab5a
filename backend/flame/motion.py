"""Plausible procedural head motion: talking, blinking, head turns and gaze (demos, synthetic subjects).

Everything is a smooth function of time with seeded phases, so a sequence is reproducible for a seed and
looks the same at any frame rate.
"""

from __future__ import annotations

import numpy as np

from shared_proto import FlameSequence


def _smooth_noise(rng: np.random.Generator, times: np.ndarray, rate_hz: float, channels: int) -> np.ndarray:
    """[T, channels] three random sinusoids around `rate_hz`, summed and softly saturated into (-1, 1)."""
    freqs = rate_hz * rng.uniform(0.5, 1.5, size=(3, channels))
    phases = rng.uniform(0, 2 * np.pi, size=(3, channels))
    return np.tanh(np.sin(times[:, None, None] * 2 * np.pi * freqs + phases).sum(axis=1) / np.sqrt(1.5))


def _blinks(rng: np.random.Generator, times: np.ndarray, period_s: float = 3.5, length_s: float = 0.25) -> np.ndarray:
    """[T] eyelid closure in [0, 1]: a quick close-open every `period_s` seconds on average."""
    duration = times[-1] + period_s if len(times) else 0.0
    starts = np.cumsum(rng.uniform(0.5, 1.5, size=int(duration / period_s) + 2) * period_s) - period_s * 0.6
    closure = np.zeros_like(times)
    for start in starts:
        phase = (times - start) / length_s
        closure = np.maximum(closure, np.where((phase > 0) & (phase < 1), np.sin(np.pi * phase), 0.0))
    return closure


def talking_head(frames: int, fps: float = 25.0, *, n_shape: int = 0, n_expression: int = 0, seed: int = 0,
                 shape: np.ndarray | None = None, frame_start: int = 0, eyelids: bool = True) -> FlameSequence:
    """A talking, blinking, looking-around head.

    Jaw opens at syllable rate (~4 Hz) within a speaking envelope; the head turns (±0.35 rad yaw), nods and
    tilts slowly; eyes lead the head turn; expression coefficients drift smoothly (±0.8) with a blink on the
    eyelid weights every few seconds.

    Args:
        frames: T.
        n_shape, n_expression: coefficient counts (shape zeros unless `shape` is given).
        shape: [S] identity to use (overrides n_shape).
        eyelids: include [T, 2] eyelid closure weights.
    """
    if frames < 1 or fps <= 0:
        raise ValueError(f"need frames >= 1 and fps > 0, got {frames}, {fps}")
    rng = np.random.default_rng(seed)
    times = np.arange(frames) / fps  # [T]
    speaking = 0.5 + 0.5 * _smooth_noise(rng, times, 0.3, 1)[:, 0]  # [T] envelope
    syllables = 0.5 + 0.5 * _smooth_noise(rng, times, 4.0, 1)[:, 0]  # [T]
    jaw = np.zeros((frames, 3))
    jaw[:, 0] = 0.22 * speaking * syllables  # opening is a rotation about x
    head = _smooth_noise(rng, times, 0.15, 3) * np.array([0.12, 0.35, 0.08])  # pitch, yaw, roll  [T, 3]
    rotation = head * 0.4
    neck = head * 0.6
    gaze = np.clip(head[:, :2] * 1.3 + 0.08 * _smooth_noise(rng, times, 0.5, 2), -0.6, 0.6)  # [T, 2]
    eye = np.stack([gaze[:, 0], gaze[:, 1], np.zeros(frames)], axis=1) - head * np.array([0.4, 0.4, 0.0])
    eyes = np.concatenate([eye, eye], axis=1)  # [T, 6]
    expression = 0.8 * _smooth_noise(rng, times, 0.4, n_expression) if n_expression else np.zeros((frames, 0))
    blink = _blinks(rng, times)
    identity = np.zeros(n_shape) if shape is None else np.asarray(shape, dtype=np.float64)
    translation = np.zeros((frames, 3))
    translation[:, :2] = 0.005 * _smooth_noise(rng, times, 0.2, 2)
    return FlameSequence(shape=identity, expression=expression, rotation=rotation, neck=neck, jaw=jaw, eyes=eyes,
                         translation=translation, eyelids=np.stack([blink, blink], axis=1) if eyelids else None,
                         fps=fps, frame_start=frame_start)
