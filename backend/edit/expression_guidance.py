"""Expression-similarity guidance for the dataset update, with the tracker in place of EMOCA.

PortraitGen keeps edits from changing the performance by comparing EMOCA expression codes of the render and the
source. EMOCA's weights cannot be had here, so Keyface compares what its own tracker sees instead:

- **landmark geometry**: the tracker's face-mesh landmarks (`backend.track.landmarks.FaceLandmarker`, MediaPipe)
  of the edited frame and of the source frame, restricted to the points that carry one of the head's landmarks
  (`FlameModel.mediapipe_indices`), aligned by a similarity transform (Procrustes: the pose may stay, the shape
  of the face may not change) and measured as the mean point distance over the inter-ocular distance (NME);
- **FLAME expression**: the head's expression coefficients fitted to each image's landmarks with the frame's
  tracked shape, pose and camera held fixed (Gauss-Newton with a pull towards the tracked expression); their
  Euclidean distance.

`ExpressionGuidance.accepts` turns that into the loop's guidance: an edit whose landmark geometry strays more than
the tolerance from the source is not written into the dataset (the frame keeps its previous content), so the
avatar only ever learns edits that keep the subject's expression.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from backend.flame import FlameModel
from shared_proto import Camera, FlameSequence

from .geometry import project

Detector = Callable[[np.ndarray], "np.ndarray | None"]
"""uint8 RGB [H, W, 3] -> face-mesh landmarks [P, 2] in pixels, or None without a face."""

GAUSS_NEWTON_STEPS = 4
RIDGE = 1e-2
"""Weight of the pull towards the tracked expression in the fit, relative to the mean diagonal of J^T J."""


@dataclasses.dataclass(frozen=True)
class ExpressionDistance:
    """How far an edit moved the face, per `ExpressionGuidance.compare`.

    Attributes:
        landmark_nme: mean landmark distance after similarity alignment, over the inter-ocular distance; inf when
            either image has no detectable face.
        expression: Euclidean distance of the fitted FLAME expression coefficients (nan when not fitted).
    """

    landmark_nme: float
    expression: float


def similarity_align(points: np.ndarray, target: np.ndarray) -> np.ndarray:
    """points [P, 2] moved onto target [P, 2] by the least-squares rotation, uniform scale and translation."""
    mu_p, mu_t = points.mean(0), target.mean(0)
    centred_p, centred_t = points - mu_p, target - mu_t
    u, s, vt = np.linalg.svd(centred_p.T @ centred_t)  # [2, 2]
    d = np.sign(np.linalg.det(u @ vt))
    correction = np.diag([1.0, d])
    rotation = u @ correction @ vt  # [2, 2]
    scale = float((s * np.diag(correction)).sum() / max((centred_p ** 2).sum(), 1e-12))
    return centred_p @ rotation * scale + mu_t


def landmark_nme(points: np.ndarray, target: np.ndarray, eyes: tuple[int, int]) -> float:
    """Mean distance of points [P, 2] (after `similarity_align`) to target [P, 2], over target's distance between
    the two points `eyes` (indices into P)."""
    aligned = similarity_align(points, target)
    ocular = float(np.linalg.norm(target[eyes[0]] - target[eyes[1]]))
    return float(np.linalg.norm(aligned - target, axis=1).mean() / max(ocular, 1e-6))


class ExpressionGuidance:
    """Measures edits against their source frames (see the module docstring).

    Args:
        head: the FLAME model of the avatar; its `mediapipe_indices` pick the compared face-mesh points.
        shape: [S] the avatar's identity coefficients.
        sequence: the dataset's tracked FLAME parameters.
        cameras: the dataset's cameras.
        tolerance: the largest accepted landmark NME.
        detector: landmark detector (default: the tracker's MediaPipe face mesh).
    """

    def __init__(self, head: FlameModel, shape: Tensor, sequence: FlameSequence, cameras: Sequence[Camera], *,
                 tolerance: float, detector: Detector | None = None) -> None:
        if not tolerance > 0:
            raise ValueError(f"tolerance must be > 0, got {tolerance!r}")
        indices = head.mediapipe_indices.cpu().numpy()  # [L]
        self.used = np.flatnonzero(indices >= 0)  # head landmarks with a face-mesh point
        if len(self.used) < 6:
            raise ValueError(f"the head has {len(self.used)} landmarks with a MediaPipe index; expression guidance "
                             f"needs at least 6 (a FLAME file needs its mediapipe embedding)")
        self.mesh_points = indices[self.used]  # [P] face-mesh indices
        self.eyes = _eye_points(len(indices), self.used)
        self.head, self.shape, self.sequence, self.cameras = head, shape, sequence, list(cameras)
        self.tolerance = float(tolerance)
        self._detector = detector
        self._landmarker = None
        self._sources: dict[int, np.ndarray | None] = {}
        self._bases: dict[int, tuple[Tensor, Tensor, Tensor]] = {}

    def detect(self, image: Tensor) -> np.ndarray | None:
        """[P, 2] the compared landmarks of image [H, W, 3] float, or None without a face."""
        if self._detector is None:
            from backend.track.landmarks import FaceLandmarker

            self._landmarker = FaceLandmarker(static_images=True)
            self._detector = self._landmarker.detect
        pixels = (image.detach().float().clamp(0, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)
        points = self._detector(pixels)
        if points is None:
            return None
        points = np.asarray(points, dtype=np.float64)
        if points.ndim != 2 or points.shape[1] != 2 or points.shape[0] <= int(self.mesh_points.max()):
            raise ValueError(f"the landmark detector returned {list(points.shape)}; expected [P, 2] with "
                             f"P > {int(self.mesh_points.max())}")
        return points[self.mesh_points]

    def close(self) -> None:
        """Release the MediaPipe face mesh (when this object started one)."""
        if self._landmarker is not None:
            self._landmarker.close()
            self._landmarker, self._detector = None, None

    def source_landmarks(self, index: int, source: Tensor) -> np.ndarray | None:
        if index not in self._sources:
            self._sources[index] = self.detect(source)
        return self._sources[index]

    def _linear_landmarks(self, index: int) -> tuple[Tensor, Tensor, Tensor]:
        """(tracked expression e0 [E], landmarks at e0 [P, 3], d landmarks / d expression [E, P, 3]) of frame
        `index` with its shape and pose. For a fixed pose FLAME's landmarks are affine in the expression
        (blendshapes, joint regression and skinning are all linear in it), so unit steps give the exact basis."""
        if index in self._bases:
            return self._bases[index]
        head, sequence = self.head, self.sequence
        device, dtype = head.v_template.device, head.v_template.dtype
        fixed = {name: torch.tensor(np.array(getattr(sequence, name)[index:index + 1]), dtype=dtype, device=device)
                 for name in ("rotation", "neck", "jaw", "eyes", "translation", "eyelids")
                 if getattr(sequence, name) is not None and (name != "eyelids" or head.has_eyelids)}
        count = min(head.n_expression, sequence.expression.shape[1])
        tracked = torch.zeros(head.n_expression, dtype=dtype, device=device)
        tracked[:count] = torch.tensor(np.array(sequence.expression[index, :count]), dtype=dtype, device=device)
        probes = torch.cat([tracked[None], tracked + torch.eye(head.n_expression, dtype=dtype, device=device)])
        with torch.no_grad():
            landmarks = head(shape=self.shape[None].to(device=device, dtype=dtype), expression=probes,
                             **fixed).landmarks[:, torch.as_tensor(self.used, device=device)]  # [E + 1, P, 3]
        self._bases[index] = (tracked, landmarks[0], landmarks[1:] - landmarks[:1])
        return self._bases[index]

    def fit_expression(self, index: int, landmarks: np.ndarray) -> Tensor:
        """[E] FLAME expression of frame `index` refitted to landmarks [P, 2] with shape, pose and camera fixed:
        Gauss-Newton on the reprojection error plus `RIDGE` times the squared distance to the tracked expression
        (landmarks alone do not pin every coefficient down; the prior picks the closest explanation)."""
        tracked, base, basis = self._linear_landmarks(index)
        target = torch.as_tensor(landmarks, dtype=base.dtype, device=base.device)  # [P, 2]
        camera = [self.cameras[index]]

        def residual(coefficients: Tensor) -> Tensor:
            points = base + torch.einsum("e,epc->pc", coefficients - tracked, basis)  # [P, 3]
            pixels, _ = project(points[None], camera)  # [1, P, 2]
            return (pixels[0] - target).reshape(-1)  # [2P]

        expression = tracked.clone()
        for _ in range(GAUSS_NEWTON_STEPS):
            jacobian = torch.autograd.functional.jacobian(residual, expression)  # [2P, E]
            gram = jacobian.T @ jacobian  # [E, E]
            ridge = RIDGE * (gram.diagonal().mean() + 1e-9)
            rhs = -(jacobian.T @ residual(expression) + ridge * (expression - tracked))
            expression = expression + torch.linalg.solve(
                gram + ridge * torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device), rhs)
        return expression.detach()

    def compare(self, index: int, edited: Tensor, source: Tensor, fit: bool = False) -> ExpressionDistance:
        """Landmark geometry (and, with `fit`, FLAME expression) distance of edited [H, W, 3] to source [H, W, 3]."""
        reference = self.source_landmarks(index, source)
        points = None if reference is None else self.detect(edited)
        if reference is None or points is None:
            return ExpressionDistance(float("inf"), float("nan"))
        nme = landmark_nme(points, reference, self.eyes)
        distance = float("nan")
        if fit:
            distance = float((self.fit_expression(index, points) - self.fit_expression(index, reference)).norm())
        return ExpressionDistance(nme, distance)

    def accepts(self, index: int, edited: Tensor, source: Tensor) -> tuple[bool, ExpressionDistance]:
        """(keep the edit?, its distance): kept when the landmark NME is within tolerance, or when the source itself
        shows no detectable face (nothing to compare against)."""
        if self.source_landmarks(index, source) is None:
            return True, ExpressionDistance(float("nan"), float("nan"))
        distance = self.compare(index, edited, source)
        return distance.landmark_nme <= self.tolerance, distance


def _eye_points(count: int, used: np.ndarray) -> tuple[int, int]:
    """Positions in `used` of two points far apart across the eyes: the iBUG-68 outer eye corners (36, 45) when the
    head has the 68 layout and both are used, else the first and last used points."""
    position = {int(landmark): i for i, landmark in enumerate(used)}
    if count == 68 and 36 in position and 45 in position:
        return position[36], position[45]
    return 0, len(used) - 1
