"""What densify / prune did to an avatar's per-Gaussian parameters, and how an optimizer follows along."""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn


@dataclasses.dataclass(frozen=True, eq=False)
class Restructure:
    """The per-Gaussian parameters went from N to N' Gaussians.

    Attributes:
        parameters: the new parameters (already installed in the avatar), by name.
        previous: the parameters they replace, by name.
        source: [N'] index of the previous Gaussian each new one is, copies or descends from.
        fresh: [N'] True for new Gaussians (clones, split children): optimizer state for them starts at zero.
    """

    parameters: dict[str, nn.Parameter]
    previous: dict[str, nn.Parameter]
    source: Tensor
    fresh: Tensor

    def then(self, later: Restructure) -> Restructure:
        """This step followed by `later` (which restructured this step's `parameters`) as one step."""
        return Restructure(parameters=later.parameters, previous=self.previous, source=self.source[later.source],
                           fresh=self.fresh[later.source] | later.fresh)

    def update_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Put the new parameters into `optimizer` in place of the previous ones.

        Per-Gaussian state (any state tensor shaped like its parameter, e.g. Adam's `exp_avg` / `exp_avg_sq`)
        is gathered along `source`, zero for fresh Gaussians; other state (Adam's `step`) is kept.
        """
        names = {id(parameter): name for name, parameter in self.previous.items()}
        for group in optimizer.param_groups:
            for index, parameter in enumerate(group["params"]):
                name = names.get(id(parameter))
                if name is None:
                    continue
                new = self.parameters[name]
                group["params"][index] = new
                state = optimizer.state.pop(parameter, None)
                if state is not None:
                    optimizer.state[new] = {key: self._gathered(value, parameter) for key, value in state.items()}

    def _gathered(self, value: object, parameter: Tensor) -> object:
        if not isinstance(value, Tensor) or value.shape != parameter.shape or value.ndim == 0:
            return value
        gathered = value[self.source.to(value.device)]  # [N', ...]
        gathered[self.fresh.to(value.device)] = 0
        return gathered
