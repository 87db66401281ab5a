"""`GaussianAvatar`: 3D Gaussians rigged to the triangles of a FLAME head (GaussianAvatars).

Every Gaussian is bound to one triangle (`binding`) and stores its position, rotation and log-scale in that
triangle's local frame (`geometry.face_frames`: centroid, edge / normal basis, triangle scale k). Posed:

    mean  = centroid + k * R @ local_mean
    quat  = q(R) * normalize(local_quat)
    scale = k * exp(local_log_scale)

so Gaussians follow the mesh through shape, expression and pose. Optional expression offsets (FlashAvatar)
are added to the local attributes first. Appearance is SH (3DGS) or a Neural Gaussian Texture (PortraitGen).
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from backend.flame import FlameModel
from backend.flame.texture import HeadTexture
from backend.render import describe
from shared_proto.types import FlameParams, FlameSequence

from .config import AvatarConfig
from .gaussians import Gaussians, StaticGaussians
from .geometry import face_frames, matrix_to_quaternion, quaternion_multiply, quaternion_to_matrix
from .neural_renderer import NeuralRenderer
from .offsets import ExpressionOffsets
from .restructure import Restructure
from .texture_colors import surface_colors
from .sampling import sample_surface
from .sh import rgb_to_sh

FLAME_INPUTS = ("expression", "rotation", "neck", "jaw", "eyes", "translation", "eyelids")
"""Per-frame FLAME arguments `gaussians_at` takes (plus `shape`, which is ignored: see `gaussians_at`)."""
SCALE_PER_SPACING = 0.8
"""New Gaussians' in-plane standard deviation, as a multiple of the expected distance between them."""
THICKNESS = 0.2
"""New Gaussians' standard deviation along the triangle normal, as a fraction of the in-plane one."""
FEATURE_NOISE = 0.01
"""Standard deviation of the initial non-RGB Neural Gaussian Texture channels."""

FlameInput = FlameParams | FlameSequence | Mapping[str, Tensor]


def parameter_shapes(config: AvatarConfig, n: int) -> dict[str, tuple[int, ...]]:
    """Names and shapes of an avatar's per-Gaussian parameters (all in the triangle frames).

    means [N, 3] (triangle-scale units), quats [N, 4] (wxyz, any norm), scales [N, 3] (log of scale / k),
    opacities [N] (logits); then sh0 [N, 1, 3] and shN [N, K - 1, 3], or features [N, D].
    """
    shapes = {"means": (n, 3), "quats": (n, 4), "scales": (n, 3), "opacities": (n,)}
    if config.appearance == "sh":
        shapes.update(sh0=(n, 1, 3), shN=(n, config.sh_coefficients - 1, 3))
    else:
        shapes["features"] = (n, config.feature_dim)
    return shapes


class GaussianAvatar(nn.Module):
    """Triangle-bound Gaussians on a FLAME head, posed by any FLAME parameters.

    Build one with `GaussianAvatar.from_surface` (or `default_avatar`, or `load_package`). The head is a
    submodule (its buffers follow `.to()`); the avatar's own state is `shape`, `binding`, `params`, and the
    optional `offsets` MLP and `renderer` CNN.

    Attributes:
        config: the `AvatarConfig`.
        head: the FLAME model the Gaussians are bound to.
        shape: [S] buffer, the avatar's identity coefficients (S may be 0: the template head).
        binding: [N] int64 buffer, the triangle of each Gaussian.
        params: per-Gaussian parameters (see `parameter_shapes`).
        offsets: `ExpressionOffsets` or None.
        renderer: `NeuralRenderer` (appearance "neural") or None.
    """

    def __init__(self, head: FlameModel, config: AvatarConfig, binding: Tensor, parameters: Mapping[str, Tensor],
                 shape: Tensor | None = None) -> None:
        super().__init__()
        if not isinstance(head, FlameModel):
            raise TypeError(f"head must be a FlameModel, got {type(head).__name__}")
        if not isinstance(config, AvatarConfig):
            raise TypeError(f"config must be an AvatarConfig, got {type(config).__name__}")
        device, dtype = head.v_template.device, head.v_template.dtype
        n_faces = head.faces.shape[0]
        if not isinstance(binding, Tensor) or binding.is_floating_point() or binding.ndim != 1:
            raise ValueError(f"binding must be an integer tensor [N], got {describe(binding)}")
        if binding.numel() and (int(binding.min()) < 0 or int(binding.max()) >= n_faces):
            raise ValueError(f"binding must index the head's {n_faces} triangles, got values in "
                             f"[{int(binding.min())}, {int(binding.max())}]")
        expected = parameter_shapes(config, binding.shape[0])
        if set(parameters) != set(expected):
            raise ValueError(f"parameters for appearance {config.appearance!r} must be {sorted(expected)}, "
                             f"got {sorted(parameters)}")
        for name, want in expected.items():
            value = parameters[name]
            if not isinstance(value, Tensor) or not value.is_floating_point() or tuple(value.shape) != want:
                raise ValueError(f"parameter {name!r} must be a float tensor {list(want)}, got {describe(value)}")
            if not torch.isfinite(value).all():
                raise ValueError(f"parameter {name!r} has {int((~torch.isfinite(value)).sum())} non-finite values")
        shape = torch.zeros(0) if shape is None else shape
        if not isinstance(shape, Tensor) or not shape.is_floating_point() or shape.ndim != 1 \
                or shape.shape[0] > head.n_shape or not torch.isfinite(shape).all():
            raise ValueError(f"shape must be a finite float tensor [S] with S <= {head.n_shape}, "
                             f"got {describe(shape)}")
        self.config = config
        self.head = head
        self.register_buffer("shape", shape.detach().to(device=device, dtype=dtype).clone())
        self.register_buffer("binding", binding.detach().to(device=device, dtype=torch.long).clone())
        self.params = nn.ParameterDict({name: nn.Parameter(parameters[name].detach().to(device=device, dtype=dtype)
                                                           .clone()) for name in expected})
        self.offsets = None
        if config.use_expression_offsets:
            condition_dim = config.mlp_expression_dims + 3 + 6 + 2  # expression, jaw, eyes, eyelids
            self.offsets = ExpressionOffsets(condition_dim, config.mlp_width, config.mlp_layers,
                                             config.mlp_frequencies).to(device=device, dtype=dtype)
        self.renderer = None
        if config.appearance == "neural":
            self.renderer = NeuralRenderer(config.feature_dim, config.renderer).to(device=device, dtype=dtype)

    @classmethod
    def from_surface(cls, head: FlameModel, config: AvatarConfig = AvatarConfig(), *, seed: int = 0,
                     shape: Tensor | None = None, texture: HeadTexture | None = None,
                     opacity: float = 0.1) -> GaussianAvatar:
        """A new avatar with Gaussians sampled on the head's rest-pose surface (`sampling.sample_surface`).

        Gaussians lie flat on their triangle (in-plane standard deviation `SCALE_PER_SPACING` times the expected
        spacing, `THICKNESS` of that along the normal), unrotated in the triangle frame. Colour: the texture at
        each Gaussian's UV when `texture` has an image, else 0.5 grey. The same arguments and seed give the same
        avatar, MLP and renderer weights included (the global torch RNG is left untouched).

        Args:
            head: the FLAME model.
            config: counts, appearance and offsets.
            seed: random seed of the sampling and of the network initialisation.
            shape: [S] identity coefficients of the avatar (default: the template).
            texture: UVs (sampling density follows the UV layout) and albedo, e.g. `read_head_texture(head)`.
            opacity: initial opacity in (0, 1) (GaussianAvatars trains from 0.1).
        """
        if not isinstance(head, FlameModel) or not isinstance(config, AvatarConfig):
            raise TypeError(f"from_surface needs a FlameModel and an AvatarConfig, got {type(head).__name__} and "
                            f"{type(config).__name__}")
        if shape is not None and not isinstance(shape, Tensor):
            raise TypeError(f"shape must be a torch.Tensor [S] or None, got {type(shape).__name__}")
        if not 0.0 < opacity < 1.0:
            raise ValueError(f"opacity must be in (0, 1), got {opacity}")
        if texture is not None and not isinstance(texture, HeadTexture):
            raise TypeError(f"texture must be a HeadTexture or None, got {type(texture).__name__}")
        with torch.no_grad():
            rest = head(shape=None if shape is None else shape[None].to(head.v_template)).vertices  # [1, V, 3]
        samples = sample_surface(rest[0], head.faces, count=config.num_gaussians,
                                 per_triangle=config.gaussians_per_triangle,
                                 face_uvs=None if texture is None else texture.face_uvs(), seed=seed)
        device, dtype = rest.device, rest.dtype
        faces, barycentric = samples.faces.to(device), samples.barycentric.to(device=device, dtype=dtype)
        centroids, rotations, scales = (value[0, faces] for value in face_frames(rest, head.faces))
        points = (barycentric[:, :, None] * rest[0, head.faces[faces]]).sum(1)  # [N, 3]
        local = ((points - centroids)[:, None, :] @ rotations)[:, 0] / scales  # [N, 3] = R^T (p - c) / k
        sigma = SCALE_PER_SPACING * samples.spacing.to(device=device, dtype=dtype)[:, None]  # [N, 1]
        log_sigma = torch.log(sigma.clamp_min(1e-8) / scales)  # [N, 1]
        n = faces.shape[0]
        parameters = {
            "means": local,
            "quats": torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=dtype, device=device).expand(n, 4),
            "scales": log_sigma + torch.tensor([0.0, math.log(THICKNESS), 0.0], dtype=dtype, device=device),
            "opacities": torch.full((n,), math.log(opacity / (1.0 - opacity)), dtype=dtype, device=device),
        }
        colors = surface_colors(texture, samples.faces, samples.barycentric)
        colors = colors.to(device=device, dtype=dtype)  # [N, 3]
        if config.appearance == "sh":
            parameters["sh0"] = rgb_to_sh(colors)[:, None]
            parameters["shN"] = torch.zeros(n, config.sh_coefficients - 1, 3, dtype=dtype, device=device)
        else:
            generator = torch.Generator().manual_seed(seed)
            noise = torch.randn(n, config.feature_dim - 3, generator=generator) * FEATURE_NOISE
            parameters["features"] = torch.cat([colors, noise.to(device=device, dtype=dtype)], dim=1)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return cls(head, config, samples.faces, parameters, shape=shape)

    @property
    def n_gaussians(self) -> int:
        return self.binding.shape[0]

    def forward(self, params: FlameInput) -> Gaussians:
        """`gaussians_at`."""
        return self.gaussians_at(params)

    def gaussians_at(self, params: FlameInput) -> Gaussians:
        """Pose the Gaussians for one frame or many (vectorised over frames).

        Args:
            params: `FlameParams` (B = 1), `FlameSequence` (B = T), or a dict of [B, n] tensors named like
                `FlameModel.forward`'s arguments (rows of size 1 are shared). The identity is always the
                avatar's own `shape`; a `shape` in `params` is ignored (as in cross-identity reenactment).

        Returns:
            `Gaussians` with means / quats / scales [B, N, *], opacities [B, N], and sh [N, K, 3] or
            features [N, D].
        """
        means, quats, log_scales, logits = self._posed(params)
        batch = means.shape[0]
        sh = features = None
        if self.config.appearance == "sh":
            sh = torch.cat([self.params["sh0"], self.params["shN"]], dim=1)  # [N, K, 3]
        else:
            features = self.params["features"]
        return Gaussians(means=means, quats=quats, scales=log_scales.exp(),
                         opacities=torch.sigmoid(logits).expand(batch, -1), sh=sh, features=features)

    def static_at(self, params: FlameInput) -> list[StaticGaussians]:
        """The posed Gaussians of every frame in the 3DGS PLY parametrisation (log-scales and logits computed
        without a round trip through exp / sigmoid), on the CPU; neural avatars give their RGB channels as SH DC.
        Binding is included."""
        with torch.no_grad():
            means, quats, log_scales, logits = self._posed(params)
            if self.config.appearance == "sh":
                sh = torch.cat([self.params["sh0"], self.params["shN"]], dim=1)  # [N, K, 3]
            else:
                sh = rgb_to_sh(self.params["features"][:, :3])[:, None]  # [N, 1, 3]
            cpu = {"dtype": torch.float32, "device": "cpu"}
            return [StaticGaussians(means=means[b].to(**cpu), quats=quats[b].to(**cpu),
                                    log_scales=log_scales[b].to(**cpu), opacity_logits=logits.to(**cpu),
                                    sh=sh.to(**cpu), binding=self.binding.cpu()) for b in range(means.shape[0])]

    def _posed(self, params: FlameInput) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """means [B, N, 3], unit quats [B, N, 4], log-scales [B, N, 3], opacity logits [N]."""
        inputs = self._flame_inputs(params)
        shape = self.shape[None] if self.shape.numel() else None
        vertices = self.head(shape=shape, **inputs).vertices  # [B, V, 3]
        centroids, rotations, scales = face_frames(vertices, self.head.faces)  # [B, F, 3], [B, F, 3, 3], [B, F, 1]
        face_quats = matrix_to_quaternion(rotations)  # [B, F, 4]
        local_means, local_quats, local_log_scales = self.params["means"], self.params["quats"], self.params["scales"]
        if self.offsets is not None:
            d_means, d_quats, d_log_scales = self.offsets(self._condition(inputs, vertices.shape[0]), self._anchors())
            local_means, local_quats = local_means + d_means, local_quats + d_quats  # [B, N, 3], [B, N, 4]
            local_log_scales = local_log_scales + d_log_scales  # [B, N, 3]
        binding = self.binding
        k = scales[:, binding]  # [B, N, 1]
        means = centroids[:, binding] + k * (rotations[:, binding] * local_means[..., None, :]).sum(-1)  # [B, N, 3]
        quats = F.normalize(quaternion_multiply(face_quats[:, binding], F.normalize(local_quats, dim=-1)), dim=-1)
        return means, quats, local_log_scales + k.log(), self.params["opacities"]

    def _flame_inputs(self, params: FlameInput) -> dict[str, Tensor]:
        """FLAME arguments as [B or 1, n] tensors (shape dropped)."""
        device, dtype = self.head.v_template.device, self.head.v_template.dtype
        if isinstance(params, (FlameParams, FlameSequence)):
            return {name: torch.tensor(np.atleast_2d(getattr(params, name)), dtype=dtype, device=device)
                    for name in FLAME_INPUTS if getattr(params, name) is not None}
        if not isinstance(params, Mapping):
            raise TypeError(f"params must be FlameParams, FlameSequence or a dict of tensors, "
                            f"got {type(params).__name__}")
        unknown = sorted(set(params) - set(FLAME_INPUTS) - {"shape"})
        if unknown:
            raise ValueError(f"unknown FLAME parameters {unknown}; expected some of {list(FLAME_INPUTS)}")
        for name, value in params.items():
            if not isinstance(value, Tensor):
                raise TypeError(f"params[{name!r}] must be a torch.Tensor [B, n], got {type(value).__name__}")
        return {name: value for name, value in params.items() if name != "shape"}

    def _condition(self, inputs: dict[str, Tensor], batch: int) -> Tensor:
        """[B, C] offset-MLP input: leading expression coefficients, jaw, eyes, eyelids (zeros when absent)."""
        device, dtype = self.head.v_template.device, self.head.v_template.dtype
        parts = []
        for name, width in (("expression", self.config.mlp_expression_dims), ("jaw", 3), ("eyes", 6), ("eyelids", 2)):
            value = inputs.get(name)
            value = torch.zeros(1, width, device=device, dtype=dtype) if value is None else value.to(device, dtype)
            value = F.pad(value[:, :width], (0, max(0, width - value.shape[1])))
            parts.append(value.expand(batch, -1))
        return torch.cat(parts, dim=1)

    def _anchors(self) -> Tensor:
        """[N, 3] rest positions of the Gaussians on the template head, centred and scaled to about [-1, 1]."""
        template = self.head.v_template  # [V, 3]
        centroids, rotations, scales = face_frames(template[None], self.head.faces)
        binding = self.binding
        local = self.params["means"].detach()
        anchors = centroids[0, binding] + scales[0, binding] * (rotations[0, binding] * local[:, None, :]).sum(-1)
        centre = template.mean(dim=0)
        radius = (template - centre).norm(dim=1).max().clamp_min(1e-8)
        return (anchors - centre) / radius

    # --- densification (GaussianAvatars): children keep their parent's triangle --------------------------------

    def clone(self, mask: Tensor) -> Restructure:
        """Append a copy of every Gaussian in `mask` [N] bool (same triangle and local attributes)."""
        mask = self._mask(mask)
        everyone = torch.arange(self.n_gaussians, device=mask.device)
        chosen = everyone[mask]
        return self._rebuild(torch.cat([everyone, chosen]), torch.cat([torch.zeros_like(mask), mask[mask]]))

    def split(self, mask: Tensor, children: int = 2, generator: torch.Generator | None = None) -> Restructure:
        """Replace every Gaussian in `mask` [N] bool by `children` Gaussians on its triangle.

        Children are drawn from the parent Gaussian (in its triangle frame) and shrunk by 1 / (0.8 * children),
        as 3DGS / GaussianAvatars do. `generator` (a CPU generator) makes the draw repeatable.
        """
        mask = self._mask(mask)
        if isinstance(children, bool) or not isinstance(children, int) or children < 1:
            raise ValueError(f"children must be a positive integer, got {children!r}")
        everyone = torch.arange(self.n_gaussians, device=mask.device)
        parents = everyone[mask].repeat(children)  # [M * children]
        kept = everyone[~mask]
        sigma = self.params["scales"].detach()[parents].exp()  # [M * children, 3]
        draw = torch.randn(sigma.shape, generator=generator, dtype=sigma.dtype).to(sigma.device) * sigma
        rotation = quaternion_to_matrix(self.params["quats"].detach()[parents])  # [M * children, 3, 3]
        child_means = self.params["means"].detach()[parents] + (rotation @ draw[..., None])[..., 0]
        child_scales = self.params["scales"].detach()[parents] - math.log(0.8 * children)
        updates = {"means": torch.cat([self.params["means"].detach()[kept], child_means]),
                   "scales": torch.cat([self.params["scales"].detach()[kept], child_scales])}
        fresh = torch.cat([torch.zeros_like(kept, dtype=torch.bool), torch.ones_like(parents, dtype=torch.bool)])
        return self._rebuild(torch.cat([kept, parents]), fresh, updates)

    def prune(self, mask: Tensor) -> Restructure:
        """Remove every Gaussian in `mask` [N] bool, except that a triangle that would lose all its Gaussians
        keeps its most opaque one (GaussianAvatars keeps every triangle bound)."""
        mask = self._mask(mask)
        n_faces, binding = self.head.faces.shape[0], self.binding
        ones = torch.ones_like(binding, dtype=torch.float32)
        total = torch.zeros(n_faces, device=binding.device).index_add_(0, binding, ones)  # [F]
        removed = torch.zeros(n_faces, device=binding.device).index_add_(0, binding[mask], ones[mask])  # [F]
        emptied = (removed == total) & (total > 0)  # [F]
        candidates = mask & emptied[binding]  # [N]
        logits = torch.nan_to_num(self.params["opacities"].detach().float(), nan=-math.inf)
        score = torch.where(candidates, logits, torch.full_like(logits, -math.inf))
        best = torch.full((n_faces,), -math.inf, device=binding.device).scatter_reduce(0, binding, score, "amax")
        winners = candidates & (score == best[binding])  # [N], ties possible
        index = torch.arange(self.n_gaussians, device=binding.device)
        first = torch.full((n_faces,), self.n_gaussians, device=binding.device)
        first = first.scatter_reduce(0, binding[winners], index[winners], "amin")  # [F]
        keep = ~mask
        keep[first[emptied]] = True
        return self._rebuild(index[keep], torch.zeros(int(keep.sum()), dtype=torch.bool, device=binding.device))

    def densify_and_prune(self, grads: Tensor, *, grad_threshold: float, size_threshold: float,
                          min_opacity: float, children: int = 2,
                          generator: torch.Generator | None = None) -> Restructure:
        """One 3DGS / GaussianAvatars densification step: Gaussians whose accumulated view-space gradient
        `grads` [N] reaches `grad_threshold` are cloned when their largest rest-pose scale is at most
        `size_threshold` (metres), split into `children` otherwise; then Gaussians with opacity below
        `min_opacity` are pruned. Returns the three steps as one `Restructure`."""
        grads = self._values(grads, "grads")
        with torch.no_grad():
            rest = self.head(shape=self.shape[None] if self.shape.numel() else None).vertices
            face_scale = face_frames(rest, self.head.faces)[2][0, self.binding, 0]  # [N]
            sizes = self.params["scales"].detach().max(dim=1).values.exp() * face_scale  # [N]
        high = grads >= grad_threshold
        cloned = self.clone(high & (sizes <= size_threshold))
        split_mask = torch.cat([high & (sizes > size_threshold), torch.zeros(self.n_gaussians - high.shape[0],
                                                                              dtype=torch.bool, device=high.device)])
        step = cloned.then(self.split(split_mask, children, generator))
        weak = torch.sigmoid(self.params["opacities"].detach()) < min_opacity
        return step.then(self.prune(weak))

    def _rebuild(self, source: Tensor, fresh: Tensor, updates: dict[str, Tensor] | None = None) -> Restructure:
        """Install parameters gathered along `source` (with `updates` replacing whole tensors)."""
        previous = dict(self.params.items())
        updates = updates or {}
        for name, old in previous.items():
            value = updates[name] if name in updates else old.detach()[source]
            self.params[name] = nn.Parameter(value.contiguous(), requires_grad=old.requires_grad)
        self.binding = self.binding[source]
        return Restructure(parameters=dict(self.params.items()), previous=previous, source=source, fresh=fresh)

    def _mask(self, mask: Tensor) -> Tensor:
        if not isinstance(mask, Tensor) or mask.dtype != torch.bool or tuple(mask.shape) != (self.n_gaussians,):
            raise ValueError(f"mask must be a bool tensor [{self.n_gaussians}], got {describe(mask)}")
        return mask.to(self.binding.device)

    def _values(self, values: Tensor, name: str) -> Tensor:
        if not isinstance(values, Tensor) or not values.is_floating_point() \
                or tuple(values.shape) != (self.n_gaussians,):
            raise ValueError(f"{name} must be a float tensor [{self.n_gaussians}], got {describe(values)}")
        return values.detach().to(self.binding.device)
