"""FLAME fit to 2D face-mesh landmarks: one shape and focal length, per-frame pose, expression, jaw and gaze.

Model. The head's landmarks that carry a MediaPipe index (`FlameModel.mediapipe_indices`: the built-in head's
68, or an official FLAME file's metrical-tracker embedding) are matched to those face-mesh points; the pupils
(front-most eyeball vertices) to the iris centres. The camera is fixed at `camera_distance` metres in front of
the FLAME origin looking back at it (world-to-camera R = diag(1, -1, -1), t = (0, 0, d)); the head moves
(global rotation and translation; the neck stays 0, as one rotation per frame cannot be told apart from it by
landmarks). Each frame's intrinsics are fx = fy = f * focal_scale[t] with principal point principal[t], so one
normalised focal length f (pixels = f * the source frame's larger side) serves crops of any scale.

Loss (residuals in pixels at a 256 crop, so weights do not depend on the resolution): Huber on landmark and
iris distances (outline points and closed eyes weigh less), plus Tikhonov priors on shape, expression, jaw
side-to-side motion, gaze and log focal, plus temporal smoothness (squared differences of neighbouring frames'
pose, translation, expression, jaw and gaze). Adam on all frames at once: first the rigid pose, then
everything.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from typing import Callable, Iterator

import numpy as np
import torch

from ..flame import FlameModel
from .landmark_head import eyeball_pupils, landmark_head
from .landmarks import FACE_OVAL, LEFT_IRIS, N_POINTS, RIGHT_IRIS

CAMERA_ROTATION = np.diag([1.0, -1.0, -1.0])
"""World-to-camera rotation of the tracking camera: OpenCV axes looking along the world's -z at the face."""
_EYE_LIDS = {4: (159, 145, 33, 133), 3: (386, 374, 362, 263)}
"""Per eye joint (4 right, 3 left): face-mesh upper lid, lower lid, and the two corners."""
_IRIS = {4: RIGHT_IRIS, 3: LEFT_IRIS}
_CLOSED_EYE = 0.12
"""Lid gap / eye width below which an eye counts as closed (its iris point is ignored)."""


@dataclasses.dataclass(frozen=True)
class FitConfig:
    """Settings of the landmark fit (defaults suit 25-100 frame clips at any crop resolution)."""

    shape_components: int | None = None
    """Identity coefficients to fit (None: all of the built-in head's 60, or 100 of FLAME's 300)."""
    expression_components: int | None = None
    """Expression coefficients to fit (None: all of the built-in head's 42, or 50 of FLAME's 100)."""
    rigid_iterations: int = 150
    """Adam steps fitting only the head pose and translation."""
    iterations: int = 600
    """Adam steps fitting everything."""
    learning_rate: float = 0.02
    """Adam step for rotations (radians) and coefficients; translation uses a tenth (metres)."""
    initial_focal: float = 1.6
    """Starting focal length as a multiple of the source frame's larger side (1.6 is about 35 degrees)."""
    camera_distance: float = 1.0
    """Metres from the camera to the FLAME origin at rest (the head translates from there)."""
    huber_px: float = 0.5
    """Residual (pixels at 256) where the Huber loss turns from quadratic to linear (small: nearly L1, robust to
    the detector's per-point biases)."""
    outline_weight: float = 0.3
    """Weight of face-outline landmarks relative to the inner face."""
    iris_weight: float = 0.5
    """Weight of each iris centre relative to one landmark (0 leaves the eyes at rest)."""
    shape_prior: float = 0.1
    """Weight of |shape|^2."""
    expression_prior: float = 0.1
    """Weight of |expression|^2 per frame."""
    jaw_prior: float = 10.0
    """Weight of the jaw's sideways and twisting rotation squared (radians), and of closing past shut."""
    gaze_prior: float = 0.5
    """Weight of the gaze rotation squared (radians)."""
    focal_prior: float = 0.5
    """Weight of log(f / initial_focal)^2."""
    pose_smoothness: float = 20.0
    """Weight of squared rotation change (radians) between neighbouring frames."""
    translation_smoothness: float = 2000.0
    """Weight of squared translation change (metres) between neighbouring frames."""
    expression_smoothness: float = 0.05
    """Weight of squared expression, jaw (x10) and gaze change between neighbouring frames."""

    def __post_init__(self) -> None:
        for name in ("rigid_iterations", "iterations"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100_000:
                raise ValueError(f"FitConfig.{name} must be an integer in 0..100000, got {value!r}")
        for name in ("shape_components", "expression_components"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ValueError(f"FitConfig.{name} must be a non-negative integer or None, got {value!r}")
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.type == "float" and (isinstance(value, bool) or not isinstance(value, (int, float))
                                          or not math.isfinite(value) or value < 0):
                raise ValueError(f"FitConfig.{field.name} must be a finite number >= 0, got {value!r}")
        for name in ("learning_rate", "initial_focal", "camera_distance", "huber_px"):
            if getattr(self, name) <= 0:
                raise ValueError(f"FitConfig.{name} must be > 0, got {getattr(self, name)!r}")


@dataclasses.dataclass(frozen=True, eq=False)
class LandmarkTargets:
    """What the fit matches, for T frames.

    Attributes:
        points: [T, 478, 2] face-mesh landmarks in crop pixels.
        focal_scale: [T] crop pixels per unit of normalised focal length (source larger side x R / box size).
        principal: [T, 2] principal point (the source frame's centre) in crop pixels.
        resolution: R, the crop side in pixels.
        neighbours: [T - 1] weight of the smoothness terms between frames t and t + 1 (0: unrelated frames).
    """

    points: np.ndarray
    focal_scale: np.ndarray
    principal: np.ndarray
    resolution: int
    neighbours: np.ndarray

    def __post_init__(self) -> None:
        frames = self.points.shape[0]
        if frames < 1 or self.points.shape != (frames, N_POINTS, 2):
            raise ValueError(f"points must be [T, {N_POINTS}, 2] with T >= 1, got {list(self.points.shape)}")
        if self.focal_scale.shape != (frames,) or self.principal.shape != (frames, 2):
            raise ValueError(f"focal_scale must be [{frames}] and principal [{frames}, 2], got "
                             f"{list(self.focal_scale.shape)} and {list(self.principal.shape)}")
        if self.neighbours.shape != (max(frames - 1, 0),):
            raise ValueError(f"neighbours must be [{frames - 1}], got {list(self.neighbours.shape)}")
        for name in ("points", "focal_scale", "principal", "neighbours"):
            if not np.all(np.isfinite(getattr(self, name))):
                raise ValueError(f"LandmarkTargets.{name} must be finite")
        resolution = self.resolution
        if not (self.focal_scale > 0).all() or isinstance(resolution, bool) or not isinstance(resolution, int) \
                or resolution < 1:
            raise ValueError(f"focal_scale must be > 0 and resolution a positive int, got resolution "
                             f"{self.resolution!r}")


@dataclasses.dataclass(frozen=True, eq=False)
class LandmarkFit:
    """The fitted parameters (in the head's full coefficient sizes) and how well they match.

    Attributes:
        shape: [S] identity.
        expression: [T, E].
        rotation: [T, 3] global rotation (axis-angle).
        jaw: [T, 3].
        eyes: [T, 6] left then right eyeball (both follow one gaze).
        translation: [T, 3] metres.
        focal: f, the focal length over the source frame's larger side.
        landmarks: [L] rows of the head's landmark list that were fitted.
        projected: [T, L, 2] those landmarks of the fitted head, in crop pixels.
        errors: [T] mean landmark distance to the detections per frame, in crop pixels.
    """

    shape: np.ndarray
    expression: np.ndarray
    rotation: np.ndarray
    jaw: np.ndarray
    eyes: np.ndarray
    translation: np.ndarray
    focal: float
    landmarks: np.ndarray
    projected: np.ndarray
    errors: np.ndarray


def matched_landmarks(head: FlameModel) -> tuple[np.ndarray, np.ndarray]:
    """([L] rows of the head's landmarks that carry a MediaPipe index, [L] those indices).

    Raises:
        ValueError: the head has no landmark with a MediaPipe index.
    """
    indices = head.mediapipe_indices.cpu().numpy()  # [L_all]
    rows = np.flatnonzero((indices >= 0) & (indices < N_POINTS))
    if rows.size < 6:
        raise ValueError(f"the head from {head.source} has {rows.size} landmarks with a MediaPipe face-mesh index; "
                         "tracking needs them. Load an official FLAME file with "
                         "FlameModel.from_file(..., mediapipe_embedding='mediapipe_landmark_embedding.npz') "
                         "(metrical-tracker's embedding), or use the built-in head")
    return rows, indices[rows]


def _huber(distance: torch.Tensor, delta: float) -> torch.Tensor:
    return torch.where(distance < delta, 0.5 * distance**2, delta * (distance - 0.5 * delta))


class LandmarkProblem:
    """The fit's fixed data as tensors on the head's device, its parameters, loss and projection.

    Parameters are a dict of tensors: shape [1, S'], expression [T, E'], rotation [T, 3], jaw [T, 3],
    gaze [T, 2] (pitch and yaw of both eyes), translation [T, 3], log_focal [1]; S' and E' are the fitted
    component counts.
    """

    def __init__(self, head: FlameModel, targets: LandmarkTargets, config: FitConfig) -> None:
        if not isinstance(head, FlameModel):
            raise TypeError(f"head must be a FlameModel, got {type(head).__name__}")
        self.head, self.targets, self.config = head, targets, config
        self.rows, mediapipe = matched_landmarks(head)
        pupils = eyeball_pupils(head) if config.iris_weight > 0 else None
        self.eye_joints = [] if pupils is None else sorted(pupils)
        cut = landmark_head(head, self.rows, np.array([pupils[j] for j in self.eye_joints], dtype=np.int64))
        device = head.v_template.device
        self.model, self.pupil_rows = cut.model.float(), cut.extra.to(device)
        frames = targets.points.shape[0]
        self.frames = frames

        def tensor(value: np.ndarray) -> torch.Tensor:
            return torch.tensor(value, dtype=torch.float32, device=device)

        self.pixel = 256.0 / targets.resolution  # crop pixels -> pixels at 256
        points = tensor(targets.points)  # [T, 478, 2]
        self.target = points[:, torch.tensor(mediapipe, device=device)]  # [T, L, 2]
        self.weight = tensor(np.where(np.isin(mediapipe, FACE_OVAL), config.outline_weight, 1.0)).expand(frames, -1)
        self.iris = points[:, [_IRIS[j] for j in self.eye_joints]]  # [T, X, 2]
        open_eyes = np.stack([_open_eye(targets.points, j) for j in self.eye_joints], axis=1) \
            if self.eye_joints else np.zeros((frames, 0))
        self.iris_weight = tensor(open_eyes) * config.iris_weight  # [T, X]
        self.focal_scale = tensor(targets.focal_scale)  # [T]
        self.principal = tensor(targets.principal)  # [T, 2]
        self.neighbours = tensor(targets.neighbours)  # [T - 1]
        wanted_shape = min(head.n_shape, 100) if config.shape_components is None else config.shape_components
        wanted_expression = min(head.n_expression, 50) if config.expression_components is None \
            else config.expression_components
        self.n_shape = min(head.n_shape, wanted_shape)
        self.n_expression = min(head.n_expression, wanted_expression)

    def initial_params(self) -> dict[str, torch.Tensor]:
        """Rest head and gaze, translations placing it over the detections, the initial focal length."""
        frames, device, config = self.frames, self.head.v_template.device, self.config
        params = {
            "shape": torch.zeros(1, self.n_shape), "expression": torch.zeros(frames, self.n_expression),
            "rotation": torch.zeros(frames, 3), "jaw": torch.zeros(frames, 3), "gaze": torch.zeros(frames, 2),
            "translation": torch.tensor(_initial_translation(self, config.initial_focal), dtype=torch.float32),
            "log_focal": torch.full((1,), math.log(config.initial_focal)),
        }
        return {name: value.to(device).requires_grad_() for name, value in params.items()}

    def params_from(self, fit: LandmarkFit) -> dict[str, torch.Tensor]:
        """The parameters of an earlier fit (to refine it)."""
        device = self.head.v_template.device
        values = {"shape": fit.shape[None, :self.n_shape], "expression": fit.expression[:, :self.n_expression],
                  "rotation": fit.rotation, "jaw": fit.jaw, "gaze": fit.eyes[:, :2], "translation": fit.translation,
                  "log_focal": np.array([math.log(fit.focal)])}
        return {name: torch.tensor(np.ascontiguousarray(value), dtype=torch.float32, device=device).requires_grad_()
                for name, value in values.items()}

    def eyes(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """[T', 6] both eyeballs' rotation from the gaze [T', 2]."""
        gaze = params["gaze"]
        eye = torch.cat([gaze, torch.zeros_like(gaze[:, :1])], dim=1)  # [T', 3]
        return torch.cat([eye, eye], dim=1)

    def to_pixels(self, points: torch.Tensor, log_focal: torch.Tensor) -> torch.Tensor:
        """[T, N, 3] world points -> [T, N, 2] crop pixels."""
        focal = torch.exp(log_focal) * self.focal_scale  # [T]
        x, y = points[..., 0], -points[..., 1]  # camera axes: R = diag(1, -1, -1)
        z = (self.config.camera_distance - points[..., 2]).clamp(min=1e-3)  # [T, N]
        uv = torch.stack([x / z, y / z], dim=-1) * focal[:, None, None]  # [T, N, 2]
        return uv + self.principal[:, None]

    def project(self, params: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """([T, L, 2] landmarks, [T, X, 2] pupils) in crop pixels."""
        out = self.model(shape=params["shape"], expression=params["expression"], rotation=params["rotation"],
                         jaw=params["jaw"], eyes=self.eyes(params), translation=params["translation"])
        return (self.to_pixels(out.landmarks, params["log_focal"]),
                self.to_pixels(out.vertices[:, self.pupil_rows], params["log_focal"]))

    def loss(self, params: dict[str, torch.Tensor], rigid: bool = False) -> torch.Tensor:
        """The landmark loss of the module docstring (`rigid`: data, pose smoothness and focal prior only)."""
        config = self.config
        landmarks, pupils = self.project(params)
        distance = (landmarks - self.target).norm(dim=-1) * self.pixel  # [T, L] pixels at 256
        data = (self.weight * _huber(distance, config.huber_px)).sum(1) / self.weight.sum(1)  # [T]
        total = data.mean()

        def change(name: str) -> torch.Tensor:  # mean weighted squared change between neighbouring frames
            value = params[name]
            if value.shape[0] < 2:
                return value.new_zeros(())
            return (self.neighbours * (value[1:] - value[:-1]).pow(2).sum(-1)).mean()

        total = total + config.pose_smoothness * change("rotation") \
            + config.translation_smoothness * change("translation")
        total = total + config.focal_prior * (params["log_focal"] - math.log(config.initial_focal)).pow(2).sum()
        if rigid:
            return total
        if self.iris.shape[1]:
            iris = (pupils - self.iris).norm(dim=-1) * self.pixel  # [T, X]
            iris_loss = (self.iris_weight * _huber(iris, config.huber_px)).sum(1)  # [T]
            total = total + iris_loss.mean() / self.weight.sum(1).mean()
        jaw = params["jaw"]  # [T, 3]
        total = total + config.shape_prior * params["shape"].pow(2).sum() \
            + config.expression_prior * params["expression"].pow(2).sum(1).mean() \
            + config.jaw_prior * (jaw[:, 1:].pow(2).sum(1) + torch.relu(-jaw[:, 0]).pow(2)).mean() \
            + config.gaze_prior * params["gaze"].pow(2).sum(1).mean()
        return total + config.expression_smoothness * (change("expression") + 100.0 * change("jaw") + change("gaze"))

    def result(self, params: dict[str, torch.Tensor]) -> LandmarkFit:
        """The parameters as a `LandmarkFit` in the head's full coefficient sizes."""
        with torch.no_grad():
            landmarks, _ = self.project(params)
            errors = (landmarks - self.target).norm(dim=-1).mean(1)  # [T] crop pixels

        def array(name: str, width: int | None = None) -> np.ndarray:  # zero-padded to the head's count
            value = params[name].detach().double().cpu().numpy()
            return value if width is None else np.pad(value, ((0, 0), (0, width - value.shape[1])))

        with torch.no_grad():
            eyes = self.eyes(params).double().cpu().numpy() if self.eye_joints else np.zeros((self.frames, 6))
        return LandmarkFit(
            shape=array("shape", self.head.n_shape)[0], expression=array("expression", self.head.n_expression),
            rotation=array("rotation"), jaw=array("jaw"), eyes=eyes, translation=array("translation"),
            focal=float(torch.exp(params["log_focal"]).item()), landmarks=self.rows,
            projected=landmarks.double().cpu().numpy(), errors=errors.double().cpu().numpy())


def _open_eye(points: np.ndarray, joint: int) -> np.ndarray:
    """[T] 1 where the eye of `joint` is open enough for its iris point to be trusted, else 0."""
    upper, lower, corner_a, corner_b = _EYE_LIDS[joint]
    gap = np.linalg.norm(points[:, upper] - points[:, lower], axis=-1)  # [T]
    width = np.linalg.norm(points[:, corner_a] - points[:, corner_b], axis=-1)  # [T]
    return (gap > _CLOSED_EYE * np.maximum(width, 1e-6)).astype(np.float64)


def _initial_translation(problem: LandmarkProblem, focal: float) -> np.ndarray:
    """[T, 3] translations that put the rest head's landmarks over the detections (centroid and spread)."""
    targets = problem.targets
    with torch.no_grad():
        rest = problem.model().landmarks[0].double().cpu().numpy()  # [L, 3]
    target = problem.target.double().cpu().numpy()  # [T, L, 2]
    scale = targets.focal_scale * focal  # [T] pixels per unit of x / z
    spread_model = np.linalg.norm(rest[:, :2] - rest[:, :2].mean(0), axis=1).mean()
    spread_image = np.linalg.norm(target - target.mean(1, keepdims=True), axis=2).mean(1)  # [T]
    depth = scale * spread_model / np.maximum(spread_image, 1e-6)  # [T] camera z of the head
    centre = (target.mean(1) - targets.principal) * depth[:, None] / scale[:, None]  # [T, 2] camera x, y
    translation = np.zeros((len(depth), 3))
    translation[:, 0] = centre[:, 0] - rest[:, 0].mean()
    translation[:, 1] = -centre[:, 1] - rest[:, 1].mean()
    translation[:, 2] = problem.config.camera_distance - depth - rest[:, 2].mean()
    return translation


@contextlib.contextmanager
def single_thread(device: torch.device) -> Iterator[None]:
    """Run torch CPU ops on one thread inside the block (the fit's tensors are tiny: threads only add overhead,
    and a lot of it on a busy machine)."""
    if device.type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def fit_landmarks(head: FlameModel, targets: LandmarkTargets, config: FitConfig = FitConfig(),
                  progress: Callable[[int, int], None] | None = None) -> LandmarkFit:
    """Fit `head` to the detected landmarks of T frames (see the module docstring).

    Args:
        head: the FLAME model; the fit runs on its device.
        targets: detections and crop intrinsics.
        config: weights and iteration counts.
        progress: optional `progress(step, total)` called every few iterations (it may raise to cancel).
    """
    problem = LandmarkProblem(head, targets, config)
    params = problem.initial_params()
    rate = config.learning_rate
    stages = [(True, config.rigid_iterations, ("rotation", "translation")),
              (False, config.iterations, tuple(params))]
    total_steps, done = config.rigid_iterations + config.iterations, 0
    with single_thread(head.v_template.device):
        for rigid, steps, names in stages:
            if steps == 0:
                continue
            groups = [{"params": [params[name]], "lr": rate * (0.1 if name == "translation" else 1.0)}
                      for name in names]
            optimizer = torch.optim.Adam(groups)
            schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps, eta_min=rate * 0.02)
            for _ in range(steps):
                optimizer.zero_grad()
                problem.loss(params, rigid).backward()
                optimizer.step()
                schedule.step()
                done += 1
                if progress is not None and (done % 25 == 0 or done == total_steps):
                    progress(done, total_steps)
        return problem.result(params)
