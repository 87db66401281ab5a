"""FLAME head model: chumpy-free loader for official FLAME files and `.npz`, LBS, landmarks, built-in head.

    model = FlameModel.from_file("generic_model.pkl", landmarks="flame_static_embedding.pkl")
    out = model(shape=betas, expression=psi, jaw=jaw)  # out.vertices [B, V, 3]
"""

from .io import (
    DEFAULT_N_SHAPE,
    JOINT_NAMES,
    N_JOINTS,
    N_POSE_CORRECTIVES,
    FlameData,
    FlameFileError,
    FlameFileMissingError,
    read_flame,
)
from .model import BUILTIN_HEAD_PATH, FlameModel, FlameOutput

__all__ = [
    "BUILTIN_HEAD_PATH", "DEFAULT_N_SHAPE", "JOINT_NAMES", "N_JOINTS", "N_POSE_CORRECTIVES", "FlameData",
    "FlameFileError", "FlameFileMissingError", "FlameModel", "FlameOutput", "read_flame",
]
