"""`Trainer`: optimise a Gaussian avatar on a `FrameDataset` (GaussianAvatars / PortraitGen recipe).

One `step()` renders a few training frames, computes

    (1 - λ_dssim) L1 + λ_dssim D-SSIM + λ_mask |alpha - mask| + λ_stable stable (neural texture)
    + λ_lpips LPIPS (only with local weights) + λ_position / λ_scale binding regularisers,

back-propagates, and takes one Adam step on the chosen parameter groups; optionally densifies / prunes
(3DGS gradient statistics, per triangle) and refines per-frame FLAME parameters. Everything random draws from the
trainer's own generator, so a seed fixes the run, and `state_dict()` (parameters, Adam moments, generator,
densification statistics, step) resumes it bit for bit.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from backend.avatar import AvatarConfig, AvatarRender, GaussianAvatar, render_avatar
from backend.avatar.sources import flame_inputs
from backend.flame.texture import HeadTexture, read_head_texture
from backend.render import camera_tensors

from . import losses
from .dataset import FrameDataset
from .evaluate import evaluate_frames
from .lpips import LPIPS

GROUPS = ("geometry", "appearance", "renderer", "offsets", "flame")
"""Parameter groups that can train: Gaussian positions / rotations / scales / opacities; SH or Neural Gaussian
Texture; the neural renderer CNN; the expression-offset MLP; per-frame FLAME parameter corrections."""
FLAME_REFINED = ("expression", "rotation", "neck", "jaw", "eyes", "translation", "eyelids")
"""Per-frame FLAME fields the "flame" group corrects (additive, zero-initialised)."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How an avatar is optimised."""

    iterations: int = 3000
    """Optimisation steps."""
    frames_per_step: int = 1
    """Training frames rendered (a batch) per step."""
    seed: int = 0
    """Seed of the frame order, densification draws and (via `initial_avatar`) the initial Gaussians."""
    train: tuple[str, ...] = ("geometry", "appearance", "renderer", "offsets")
    """Parameter groups that train (subset of `GROUPS`); e.g. ("appearance", "renderer") for editing a neural
    avatar. Groups the avatar lacks (no renderer, no offsets) are skipped."""
    lr_means: float = 1e-2
    """Adam learning rate of local positions (triangle-scale units), decayed exponentially to 1 % over the run."""
    lr_quats: float = 5e-3
    """Local rotations (unnormalised wxyz quaternions)."""
    lr_scales: float = 1e-2
    """Log-scales (triangle-scale units)."""
    lr_opacities: float = 5e-2
    """Opacity logits."""
    lr_appearance: float = 1e-2
    """SH DC / Neural Gaussian Texture (higher-order SH use a twentieth of it, as 3DGS)."""
    lr_renderer: float = 1e-3
    """The neural renderer CNN."""
    lr_offsets: float = 1e-3
    """The expression-offset MLP."""
    lr_flame: float = 1e-4
    """Per-frame FLAME corrections (radians, metres, coefficients)."""
    lambda_dssim: float = 0.2
    """Share of D-SSIM in the photometric term (the rest is L1), as 3DGS."""
    lambda_mask: float = 0.1
    """Weight of |alpha - mask| (frames with masks only)."""
    lambda_stable: float = 1.0
    """Weight of the Neural Gaussian Texture's stable loss (neural avatars only)."""
    lambda_lpips: float = 0.05
    """Weight of LPIPS; used only when `lpips_weights` is set."""
    lpips_weights: str | None = None
    """Folder with the LPIPS VGG weight files (`lpips.py`); None: no LPIPS term. Never downloaded."""
    lambda_position: float = 0.01
    """Weight of the position regulariser (GaussianAvatars)."""
    position_threshold: float = 1.0
    """Local distance (triangle scales) a Gaussian may move from its triangle's centroid before it costs."""
    lambda_scale: float = 1.0
    """Weight of the scale regulariser (GaussianAvatars)."""
    scale_threshold: float = 0.6
    """Local scale (triangle scales) above which a Gaussian costs."""
    lambda_flame: float = 1e-3
    """Weight of the squared size of the FLAME corrections (keeps them small)."""
    densify_from: int = 500
    """First step that densifies (and prunes); densify_every <= 0 or densify_until <= densify_from: never."""
    densify_until: int = 2000
    """Last step that may densify."""
    densify_every: int = 250
    """Steps between densifications."""
    grad_threshold: float = 2e-4
    """Mean view-space (NDC) gradient of a Gaussian's centre that triggers clone / split."""
    split_size: float = 0.002
    """Rest-pose size (metres) above which a Gaussian is split rather than cloned."""
    min_opacity: float = 0.005
    """Gaussians less opaque than this are pruned (a triangle always keeps one)."""
    max_gaussians: int = 200_000
    """Densification stops growing the avatar beyond this many Gaussians (pruning continues)."""

    def __post_init__(self) -> None:
        for name in ("iterations", "frames_per_step", "max_gaussians"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("seed", "densify_from", "densify_until", "densify_every"):
            if isinstance(getattr(self, name), bool) or not isinstance(getattr(self, name), int):
                raise ValueError(f"{name} must be an integer, got {getattr(self, name)!r}")
        if not isinstance(self.train, tuple) or not self.train or any(g not in GROUPS for g in self.train):
            raise ValueError(f"train must be a non-empty tuple of groups from {GROUPS}, got {self.train!r}")
        for field in dataclasses.fields(self):
            if field.name.startswith(("lr_", "lambda_")) or field.name.endswith(("_threshold", "_size")) \
                    or field.name == "min_opacity":
                value = getattr(self, field.name)
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
                    raise ValueError(f"{field.name} must be a finite number >= 0, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "train": list(self.train)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig fields {unknown}")
        values = dict(data)
        if "train" in values:
            values["train"] = tuple(values["train"])
        return cls(**values)


def initial_avatar(head: Any, dataset: FrameDataset, config: AvatarConfig, *, seed: int = 0) -> GaussianAvatar:
    """A new avatar for `dataset`'s subject: Gaussians on the tracked identity's surface (UV-area density when
    the head has UVs), GaussianAvatars' opacity 0.1, colour 0.5 grey (appearance is learned from the frames;
    the head's own texture is never used as a prior)."""
    texture = read_head_texture(head)
    layout = None if texture is None else HeadTexture(vt=texture.vt, ft=texture.ft, image=None)
    shape = torch.tensor(dataset.sequence.shape, dtype=torch.float32)
    if shape.shape[0] > head.n_shape:
        extra = shape[head.n_shape:]
        if extra.abs().max() > 0:
            raise ValueError(f"the tracking has {shape.shape[0]} shape coefficients but the head has {head.n_shape}; "
                             f"reconstruct with the FLAME model the sequence was tracked with")
        shape = shape[:head.n_shape]
    if dataset.sequence.expression.shape[1] > head.n_expression:
        raise ValueError(f"the tracking has {dataset.sequence.expression.shape[1]} expression coefficients but the "
                         f"head has {head.n_expression}; reconstruct with the FLAME model it was tracked with")
    return GaussianAvatar.from_surface(head, config, seed=seed, shape=shape, texture=layout, opacity=0.1)


class Trainer:
    """Optimises `avatar` on `dataset` (both are modified in place: the avatar trains, densification resizes it).

    Attributes:
        avatar: the avatar being trained.
        dataset: the frames.
        config: the `TrainConfig`.
        step_count: steps taken so far.
    """

    def __init__(self, avatar: GaussianAvatar, dataset: FrameDataset, config: TrainConfig = TrainConfig(), *,
                 lpips: LPIPS | None = None) -> None:
        if not isinstance(avatar, GaussianAvatar):
            raise TypeError(f"avatar must be a GaussianAvatar, got {type(avatar).__name__}")
        if not isinstance(dataset, FrameDataset):
            raise TypeError(f"dataset must be a FrameDataset, got {type(dataset).__name__}")
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
        self.avatar = avatar
        self.dataset = dataset
        self.config = config
        self.step_count = 0
        self.device = avatar.head.v_template.device
        self.dtype = avatar.head.v_template.dtype
        self.inputs = flame_inputs(avatar)
        self.tracked = {name: torch.tensor(getattr(dataset.sequence, name), dtype=self.dtype, device=self.device)
                        for name in self.inputs if getattr(dataset.sequence, name) is not None}  # [T, n] each
        self.corrections = nn.ParameterDict({name: nn.Parameter(torch.zeros_like(value))
                                             for name, value in self.tracked.items() if name in FLAME_REFINED})
        self.background = torch.tensor(dataset.background, dtype=self.dtype, device=self.device)
        self.generator = torch.Generator().manual_seed(config.seed)
        if lpips is None and config.lpips_weights is not None and config.lambda_lpips > 0:
            lpips = LPIPS.from_folder(config.lpips_weights)
        self.lpips = None if lpips is None else lpips.to(self.device)
        self._grad_sum = torch.zeros(avatar.n_gaussians, dtype=torch.float64)
        self._grad_count = torch.zeros(avatar.n_gaussians, dtype=torch.float64)
        self._captured: list[Any] = []
        self.optimizer = self._build_optimizer()

    # --- parameters ---------------------------------------------------------------------------------------------

    def _groups(self) -> list[tuple[str, list[nn.Parameter], float]]:
        """(name, parameters, learning rate) of every trainable group, in a fixed order."""
        c, params = self.config, self.avatar.params
        groups: list[tuple[str, list[nn.Parameter], float]] = []
        if "geometry" in c.train:
            groups += [("means", [params["means"]], c.lr_means), ("quats", [params["quats"]], c.lr_quats),
                       ("scales", [params["scales"]], c.lr_scales),
                       ("opacities", [params["opacities"]], c.lr_opacities)]
        if "appearance" in c.train:
            if self.avatar.config.appearance == "sh":
                groups += [("sh0", [params["sh0"]], c.lr_appearance), ("shN", [params["shN"]], c.lr_appearance / 20)]
            else:
                groups.append(("features", [params["features"]], c.lr_appearance))
        if "renderer" in c.train and self.avatar.renderer is not None:
            groups.append(("renderer", list(self.avatar.renderer.parameters()), c.lr_renderer))
        if "offsets" in c.train and self.avatar.offsets is not None:
            groups.append(("offsets", list(self.avatar.offsets.parameters()), c.lr_offsets))
        if "flame" in c.train and len(self.corrections):
            groups.append(("flame", [self.corrections[name] for name in sorted(self.corrections)], c.lr_flame))
        return groups

    def _build_optimizer(self) -> torch.optim.Adam:
        trainable = {id(p) for _, group, _ in self._groups() for p in group}
        for parameter in [*self.avatar.parameters(), *self.corrections.parameters()]:
            parameter.requires_grad_(id(parameter) in trainable)
        groups = [{"params": group, "lr": lr, "name": name, "initial_lr": lr} for name, group, lr in self._groups()]
        if not groups:
            raise ValueError(f"nothing to train: groups {self.config.train} are absent from this avatar")
        return torch.optim.Adam(groups, lr=self.config.lr_means, eps=1e-15)

    def _schedule(self) -> None:
        """Positions' learning rate decays exponentially to 1 % at the last step (3DGS)."""
        progress = min(1.0, self.step_count / max(1, self.config.iterations))
        for group in self.optimizer.param_groups:
            if group["name"] == "means":
                group["lr"] = group["initial_lr"] * 0.01 ** progress

    # --- rendering ----------------------------------------------------------------------------------------------

    def flame_at(self, indices: list[int]) -> dict[str, Tensor]:
        """[B, n] FLAME inputs of dataset frames `indices`, tracked values plus corrections."""
        rows = torch.tensor(indices, dtype=torch.long, device=self.device)
        out = {}
        for name, value in self.tracked.items():
            out[name] = value[rows] + (self.corrections[name][rows] if name in self.corrections else 0.0)
        return out

    def render(self, indices: list[int], flame: dict[str, Tensor] | None = None) -> AvatarRender:
        """The avatar in dataset frames `indices` through their cameras, over the dataset's background; posed by
        `flame` ({name: [B, n]}, e.g. `frame_fit.fit_frames`) instead of `flame_at(indices)` when given."""
        gaussians = self.avatar.gaussians_at(self.flame_at(indices) if flame is None else flame)
        cameras = camera_tensors([self.dataset.cameras[i] for i in indices], device=self.device, dtype=self.dtype)
        return render_avatar(self.avatar, gaussians, cameras, background=self.background, rasterize=self._rasterize)

    def _rasterize(self, *args: Any, **kwargs: Any) -> Any:
        """`rasterize_gaussians`, keeping each call's screen-space centres for the densification statistics."""
        from backend.render import rasterize_gaussians

        out = rasterize_gaussians(*args, **kwargs)
        if self.avatar.training and torch.is_grad_enabled() and out.means2d.requires_grad:
            out.means2d.retain_grad()
            self._captured.append(out)
        return out

    # --- one step -----------------------------------------------------------------------------------------------

    def step(self) -> dict[str, float]:
        """One optimisation step; returns the loss terms (floats, "loss" is the total)."""
        c = self.config
        self._schedule()
        train = self.dataset.train_indices
        picks = torch.randint(len(train), (c.frames_per_step,), generator=self.generator).tolist()
        indices = [train[i] for i in picks]
        target = self.dataset.images[indices].to(self.device, self.dtype)  # [B, H, W, 3]
        self._captured = []
        self.avatar.train()
        out = self.render(indices)
        terms: dict[str, Tensor] = {"l1": losses.l1(out.rgb, target), "dssim": losses.dssim(out.rgb, target)}
        total = (1.0 - c.lambda_dssim) * terms["l1"] + c.lambda_dssim * terms["dssim"]
        if self.dataset.masks is not None and c.lambda_mask > 0:
            terms["mask"] = losses.mask_loss(out.alpha, self.dataset.masks[indices].to(self.device, self.dtype))
            total = total + c.lambda_mask * terms["mask"]
        if out.features is not None and c.lambda_stable > 0:
            terms["stable"] = losses.stable_loss(out.features, out.alpha, target, self.background)
            total = total + c.lambda_stable * terms["stable"]
        if self.lpips is not None and c.lambda_lpips > 0:
            terms["lpips"] = self.lpips(out.rgb.clamp(0, 1), target).mean()
            total = total + c.lambda_lpips * terms["lpips"]
        if "geometry" in c.train:
            terms["position"], terms["scale"] = losses.binding_regularisers(
                self.avatar.params["means"], self.avatar.params["scales"], c.position_threshold, c.scale_threshold)
            total = total + c.lambda_position * terms["position"] + c.lambda_scale * terms["scale"]
        if "flame" in c.train and len(self.corrections):
            rows = torch.tensor(indices, device=self.device)
            terms["flame"] = sum(p[rows].square().sum(dim=1).mean() for p in self.corrections.values())
            total = total + c.lambda_flame * terms["flame"]
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self._accumulate_gradients()
        self.optimizer.step()
        self.step_count += 1
        self._maybe_densify()
        return {"loss": float(total.detach()), **{name: float(value.detach()) for name, value in terms.items()}}

    def _accumulate_gradients(self) -> None:
        """Add each visible Gaussian's view-space centre gradient (in NDC units, as 3DGS) to the statistics."""
        if not self._wants_densify_stats():
            self._captured = []
            return
        width, height = self.dataset.width, self.dataset.height
        scale = torch.tensor([width / 2.0, height / 2.0], dtype=torch.float64)
        for out in self._captured:
            grad = out.means2d.grad
            if grad is None:
                continue
            norms = (grad.detach().double().cpu() * scale).norm(dim=-1)  # [C, N]
            visible = out.visible.cpu()
            self._grad_sum += torch.where(visible, norms, torch.zeros_like(norms)).sum(dim=0)
            self._grad_count += visible.double().sum(dim=0)
        self._captured = []

    def _wants_densify_stats(self) -> bool:
        """Whether gradient statistics are still needed (a densification step lies ahead)."""
        c = self.config
        return "geometry" in c.train and c.densify_every > 0 and self.step_count < c.densify_until

    def _maybe_densify(self) -> None:
        """Densify and prune every `densify_every` steps from `densify_from` to `densify_until` (inclusive)."""
        c, s = self.config, self.step_count
        if "geometry" not in c.train or c.densify_every <= 0 or not c.densify_from <= s <= c.densify_until \
                or s % c.densify_every:
            return
        grads = (self._grad_sum / self._grad_count.clamp_min(1.0)).to(self.device, self.dtype)  # [N]
        threshold = c.grad_threshold if self.avatar.n_gaussians < c.max_gaussians else math.inf
        restructure = self.avatar.densify_and_prune(grads, grad_threshold=threshold, size_threshold=c.split_size,
                                                    min_opacity=c.min_opacity, generator=self.generator)
        restructure.update_optimizer(self.optimizer)
        self._grad_sum = torch.zeros(self.avatar.n_gaussians, dtype=torch.float64)
        self._grad_count = torch.zeros(self.avatar.n_gaussians, dtype=torch.float64)

    # --- evaluation and previews --------------------------------------------------------------------------------

    def evaluate(self, indices: list[int] | None = None, region: Literal["full", "mask"] = "full",
                 flame: dict[str, Tensor] | None = None) -> dict[str, float]:
        """{"psnr", "ssim", "frames"} of the renders against the dataset frames `indices` (default: the held-out
        frames), region "full" or "mask" as `evaluate.py` defines them; posed by `flame` ({name: [len(indices),
        n]}, rows in the order of `indices`: `frame_fit.fit_frames`) when given, else by the tracked parameters."""
        indices = self.dataset.holdout_indices if indices is None else list(indices)
        if flame is not None and any(value.shape[0] != len(indices) for value in flame.values()):
            raise ValueError(f"flame must have one row per frame ({len(indices)}), got "
                             f"{ {name: list(value.shape) for name, value in flame.items()} }")
        row = {index: position for position, index in enumerate(indices)}

        def render(chunk: list[int]) -> Tensor:
            if flame is None:
                return self.render(chunk).rgb
            rows = [row[i] for i in chunk]
            return self.render(chunk, {name: value[rows] for name, value in flame.items()}).rgb

        self.avatar.eval()
        try:
            return evaluate_frames(render, self.dataset, indices, region)
        finally:
            self.avatar.train()

    @torch.no_grad()
    def preview(self, index: int) -> np.ndarray:
        """[H, 2W, 4] uint8: the render of dataset frame `index` beside the frame itself (opaque)."""
        self.avatar.eval()
        rgb = self.render([index]).rgb[0].clamp(0.0, 1.0)
        self.avatar.train()
        side = torch.cat([rgb, self.dataset.images[index].to(rgb)], dim=1)  # [H, 2W, 3]
        rgba = torch.cat([side, torch.ones_like(side[..., :1])], dim=-1)
        return (rgba.float().cpu().numpy() * 255.0 + 0.5).astype(np.uint8)

    # --- state --------------------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs: step, avatar tensors (binding, parameters, networks), FLAME corrections,
        Adam state, the generator and the densification statistics (copies; the FLAME model is not included)."""
        avatar = {name: value.detach().clone() for name, value in self.avatar.state_dict().items()
                  if not name.startswith("head.")}
        return {"step": self.step_count, "avatar": avatar,
                "corrections": {name: p.detach().clone() for name, p in self.corrections.items()},
                "optimizer": _clone(self.optimizer.state_dict()), "generator": self.generator.get_state(),
                "grad_sum": self._grad_sum.clone(), "grad_count": self._grad_count.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict()` output (the avatar is resized to the saved Gaussian count)."""
        saved = state["avatar"]
        expected = {name for name in self.avatar.state_dict() if not name.startswith("head.")}
        if set(saved) != expected:
            raise ValueError(f"checkpoint does not fit this avatar: missing {sorted(expected - set(saved))[:5]}, "
                             f"unexpected {sorted(set(saved) - expected)[:5]}")
        with torch.no_grad():
            self.avatar.binding = saved["binding"].to(self.device).clone()
            for name in list(self.avatar.params.keys()):
                self.avatar.params[name] = nn.Parameter(saved[f"params.{name}"].to(self.device, self.dtype).clone())
            rest = {name: value for name, value in saved.items() if name != "binding" and not name.startswith("params.")}
            self.avatar.load_state_dict(rest, strict=False)
            for name, value in state["corrections"].items():
                if name not in self.corrections or self.corrections[name].shape != value.shape:
                    raise ValueError(f"checkpoint FLAME correction {name!r} {list(value.shape)} does not fit this "
                                     f"dataset")
                self.corrections[name].copy_(value)
        self.optimizer = self._build_optimizer()
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self._grad_sum = state["grad_sum"].clone()
        self._grad_count = state["grad_count"].clone()
        self.step_count = int(state["step"])


def _clone(value: Any) -> Any:
    """Deep copy of nested dicts / lists with tensors cloned."""
    if isinstance(value, Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        return {key: _clone(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_clone(item) for item in value)
    return value

