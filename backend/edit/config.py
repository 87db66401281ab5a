"""Configuration of editing: where model weights live, what the editors are given, and the loop's schedule.

Model folders follow one rule: a field set explicitly wins; otherwise `$KEYFACE_MODELS/<name>` is used when the
environment variable names a folder (`KEYFACE_MODELS/instruct-pix2pix/model_index.json`,
`KEYFACE_MODELS/ic-light/model_index.json`, `KEYFACE_MODELS/vgg/vgg16-397923af.pth`). Nothing is ever downloaded.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Mapping

import numpy as np

MODELS_ENV = "KEYFACE_MODELS"
"""Environment variable naming the folder that holds local model weights."""
INSTRUCT_PIX2PIX_FOLDER = "instruct-pix2pix"
IC_LIGHT_FOLDER = "ic-light"
VGG_FILE = "vgg/vgg16-397923af.pth"


@dataclasses.dataclass(frozen=True)
class EditModels:
    """Local model weights the editors may use (None: not configured)."""

    instruct_pix2pix_model: Path | None = None
    """A diffusers folder of `StableDiffusionInstructPix2PixPipeline` (with `model_index.json`), e.g. a local
    copy of timbrooks/instruct-pix2pix."""
    ic_light_model: Path | None = None
    """A diffusers folder of IC-Light's 'fc' model (a `StableDiffusionPipeline` whose UNet takes 8 input
    channels), for diffusion relighting."""
    vgg_weights: Path | None = None
    """torchvision's ImageNet VGG16 weights (`vgg16-397923af.pth`) for Gatys-style reference editing."""

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None, **overrides: str | Path | None) -> EditModels:
        """Paths from `overrides` (spec or CLI values; None: not given), else from `$KEYFACE_MODELS`."""
        environ = os.environ if environ is None else environ
        root = Path(environ[MODELS_ENV]).expanduser() if environ.get(MODELS_ENV) else None
        defaults = {"instruct_pix2pix_model": INSTRUCT_PIX2PIX_FOLDER, "ic_light_model": IC_LIGHT_FOLDER,
                    "vgg_weights": VGG_FILE}
        unknown = sorted(set(overrides) - set(defaults))
        if unknown:
            raise ValueError(f"unknown model settings {unknown}; known: {sorted(defaults)}")
        values: dict[str, Path | None] = {}
        for name, relative in defaults.items():
            given = overrides.get(name)
            if given is not None:
                values[name] = Path(given).expanduser()
            elif root is not None and (root / relative).exists():
                values[name] = root / relative
            else:
                values[name] = None
        return cls(**values)


LIGHT_PRESETS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float], float, float]] = {
    # name: (direction the light travels towards the head, in OpenCV camera axes), colour, intensity, ambient
    "front": ((0.0, 0.0, 1.0), (1.0, 1.0, 1.0), 1.0, 0.35),
    "left": ((1.0, 0.0, 0.3), (1.0, 1.0, 1.0), 1.0, 0.3),
    "right": ((-1.0, 0.0, 0.3), (1.0, 1.0, 1.0), 1.0, 0.3),
    "top": ((0.0, 1.0, 0.4), (1.0, 0.98, 0.95), 1.0, 0.3),
    "rim": ((0.0, 0.2, -1.0), (0.9, 0.95, 1.0), 1.2, 0.35),
    "warm-sunset": ((0.8, 0.3, 0.5), (1.0, 0.72, 0.45), 1.1, 0.3),
    "cool-moonlight": ((-0.6, 0.5, 0.6), (0.6, 0.72, 1.0), 0.9, 0.3),
    "studio": ((0.4, 0.45, 0.8), (1.0, 1.0, 1.0), 0.9, 0.4),
}
"""Named lights: direction, colour, intensity and ambient level (see `LightSpec`)."""


@dataclasses.dataclass(frozen=True)
class LightSpec:
    """A directional light plus ambient, for the weight-free relighting editor.

    `direction` is where the light travels, in OpenCV camera axes (x right, y down, z away from the camera):
    (0, 0, 1) lights the face from the camera, (1, 0, 0) comes from the image's left. A `preset` fills every
    field the spec leaves out.
    """

    preset: str | None = None
    """One of `LIGHT_PRESETS`, or None."""
    direction: tuple[float, float, float] | None = None
    """Direction of travel of the light (any length > 0)."""
    colour: tuple[float, float, float] | None = None
    """Linear RGB colour of the light, each in [0, 4]."""
    intensity: float | None = None
    """Scale of the directional term, in [0, 10]."""
    ambient: float | None = None
    """Ambient (direction-free) level, in [0, 4]."""

    def __post_init__(self) -> None:
        if self.preset is not None and self.preset not in LIGHT_PRESETS:
            raise ValueError(f"light preset must be one of {sorted(LIGHT_PRESETS)}, got {self.preset!r}")
        if self.direction is not None:
            array = np.asarray(self.direction, dtype=np.float64)
            if array.shape != (3,) or not np.isfinite(array).all() or float(np.linalg.norm(array)) < 1e-6:
                raise ValueError(f"light direction must be 3 finite numbers, not all zero, got {self.direction!r}")
        if self.colour is not None:
            array = np.asarray(self.colour, dtype=np.float64)
            if array.shape != (3,) or not np.isfinite(array).all() or array.min() < 0 or array.max() > 4:
                raise ValueError(f"light colour must be 3 numbers in [0, 4], got {self.colour!r}")
        for name, high in (("intensity", 10.0), ("ambient", 4.0)):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)
                                      or not math.isfinite(value) or not 0 <= value <= high):
                raise ValueError(f"light {name} must be a number in [0, {high}], got {value!r}")

    def resolved(self) -> tuple[np.ndarray, np.ndarray, float, float]:
        """(unit direction [3], colour [3], intensity, ambient), the preset ('front' by default) filling gaps."""
        direction, colour, intensity, ambient = LIGHT_PRESETS[self.preset or "front"]
        direction = np.asarray(self.direction if self.direction is not None else direction, dtype=np.float64)
        colour = np.asarray(self.colour if self.colour is not None else colour, dtype=np.float64)
        return (direction / np.linalg.norm(direction), colour,
                float(self.intensity if self.intensity is not None else intensity),
                float(self.ambient if self.ambient is not None else ambient))


@dataclasses.dataclass(frozen=True)
class DiffusionSettings:
    """Inference knobs of the diffusion editors (InstructPix2Pix, IC-Light)."""

    steps: int = 20
    """Denoising steps of a full (noise level 1) edit; a lower noise level runs proportionally fewer."""
    guidance_scale: float = 7.5
    """Text classifier-free guidance."""
    image_guidance_scale: float = 1.5
    """Image (source frame) guidance of InstructPix2Pix."""
    resolution: int = 512
    """Side the image is resized to for the diffusion model (multiple of 8)."""

    def __post_init__(self) -> None:
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or not 1 <= self.steps <= 1000:
            raise ValueError(f"steps must be an integer in [1, 1000], got {self.steps!r}")
        for name in ("guidance_scale", "image_guidance_scale"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 50:
                raise ValueError(f"{name} must be a number in [0, 50], got {value!r}")
        if isinstance(self.resolution, bool) or not isinstance(self.resolution, int) \
                or not 8 <= self.resolution <= 2048 or self.resolution % 8:
            raise ValueError(f"resolution must be a multiple of 8 in [8, 2048], got {self.resolution!r}")


@dataclasses.dataclass(frozen=True, eq=False)
class EditorSettings:
    """What the job gives an editor besides the frames."""

    light: LightSpec = LightSpec()
    """Relighting: the light."""
    reference: np.ndarray | None = None
    """Reference-style: the reference image [H, W, 3] (or [H, W, 4]: alpha marks the subject) uint8."""
    paint: Mapping[int, np.ndarray] = dataclasses.field(default_factory=dict)
    """Keyframe-paint: frame index -> the edited frame [H, W, 3] (or [H, W, 4]: alpha marks what was painted)
    uint8."""
    diffusion: DiffusionSettings = DiffusionSettings()
    """Diffusion editors' inference knobs."""
    style_steps: int = 100
    """Gatys-style reference editing: optimisation steps per frame (when VGG weights are configured)."""


@dataclasses.dataclass(frozen=True)
class EditSchedule:
    """How often and how strongly frames are edited, and how long the avatar trains on them."""

    iterations: int = 1500
    """Trainer steps after the initial pass."""
    edit_every: int = 10
    """Iterative editors: re-edit frames every this many steps (0: never, the initial pass only)."""
    edits_per_update: int = 1
    """Frames re-edited per update."""
    noise_min: float = 0.7
    """Lowest diffusion noise level of a re-edit, in (0, 1]."""
    noise_max: float = 0.98
    """Highest diffusion noise level of a re-edit (and of the initial pass), in [noise_min, 1]."""
    frame_stride: int = 1
    """Edit every k-th dataset frame (frame subsampling)."""
    max_frames: int | None = None
    """At most this many edited frames, evenly spaced (None: no limit)."""
    frames_per_step: int = 1
    """Frames rendered per trainer step."""
    face_aware: bool = True
    """Also edit a square face crop and composite it back (PortraitGen's face-aware editing)."""
    face_size: int = 512
    """Side of the face crop in pixels."""
    expression_tolerance: float | None = 0.03
    """Expression guidance: reject edits whose landmark NME to the source exceeds this (None: off). For scale, on
    the synthetic subject at 256²: MediaPipe's own noise under a 20 % brightness change is 0.004, and two
    neighbouring frames of talking differ by 0.008."""
    lr_appearance: float = 1e-2
    """Learning rate of the Neural Gaussian Texture / SH colours."""
    lr_renderer: float = 1e-3
    """Learning rate of the CNN renderer."""
    checkpoint_every: int = 200
    """Steps between checkpoints of a job."""

    def __post_init__(self) -> None:
        for name, low in (("iterations", 1), ("edit_every", 0), ("edits_per_update", 1), ("frame_stride", 1),
                          ("frames_per_step", 1), ("face_size", 16), ("checkpoint_every", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= 1_000_000:
                raise ValueError(f"schedule.{name} must be an integer in [{low}, 1000000], got {value!r}")
        if self.max_frames is not None and (isinstance(self.max_frames, bool) or not isinstance(self.max_frames, int)
                                            or self.max_frames < 1):
            raise ValueError(f"schedule.max_frames must be a positive integer or null, got {self.max_frames!r}")
        for name in ("noise_min", "noise_max", "lr_appearance", "lr_renderer"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"schedule.{name} must be a number, got {value!r}")
        if not 0 < self.noise_min <= self.noise_max <= 1:
            raise ValueError(f"schedule noise levels must satisfy 0 < noise_min <= noise_max <= 1, got "
                             f"{self.noise_min!r}, {self.noise_max!r}")
        if not 0 < self.lr_appearance <= 1 or not 0 <= self.lr_renderer <= 1:
            raise ValueError(f"schedule learning rates must be in (0, 1], got {self.lr_appearance!r}, "
                             f"{self.lr_renderer!r}")
        if not isinstance(self.face_aware, bool):
            raise ValueError(f"schedule.face_aware must be true or false, got {self.face_aware!r}")
        if self.expression_tolerance is not None and (
                isinstance(self.expression_tolerance, bool) or not isinstance(self.expression_tolerance, (int, float))
                or not 0 < self.expression_tolerance < math.inf):
            raise ValueError(f"schedule.expression_tolerance must be a positive number or null, got "
                             f"{self.expression_tolerance!r}")

    @classmethod
    def from_dict(cls, data: Any) -> EditSchedule:
        if not isinstance(data, dict):
            raise ValueError(f"spec.schedule must be an object, got {type(data).__name__}")
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"spec.schedule does not take {unknown}; it takes {sorted(known)}")
        return cls(**data)
