"""Join the head shell and its parts into one mesh with one texture atlas.

Vertex order: head shell, mouth bag, left ear, right ear, left eyeball, right eyeball. `part_ids`
labels every vertex with its piece (`PART_NAMES`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from . import parts
from .shell import Shell, build_shell

PART_NAMES = ("skin", "mouth", "ear_left", "ear_right", "eye_left", "eye_right")
# Atlas tiles (u0, v0, u1, v1), v up: the shell on top, the eyes (both share one tile), mouth and ears below.
SHELL_TILE = (0.0, 0.3, 1.0, 1.0)
EYE_TILE = (0.0, 0.0, 0.3, 0.3)
MOUTH_TILE = (0.3, 0.0, 0.65, 0.3)
EAR_TILE = (0.65, 0.0, 1.0, 0.3)


@dataclasses.dataclass(frozen=True)
class Head:
    """The assembled template mesh.

    Attributes:
        vertices: [V, 3] rest positions.
        faces: [F, 3] triangles.
        vt: [T, 2] atlas texture coordinates (OBJ convention: v up, origin at the texture's bottom-left).
        ft: [F, 3] texture-coordinate ids per triangle corner.
        part_ids: [V] index into `PART_NAMES`.
        face_parts: [F] index into `PART_NAMES` of each triangle.
        shell: the head shell with its grid bookkeeping (its vertex ids are the first ids here).
        mouth_loop: [L] the lips' inner border loop (shell ids).
    """

    vertices: np.ndarray
    faces: np.ndarray
    vt: np.ndarray
    ft: np.ndarray
    part_ids: np.ndarray
    face_parts: np.ndarray
    shell: Shell
    mouth_loop: np.ndarray

    def part(self, name: str) -> np.ndarray:
        """Boolean mask of the vertices of one part.  # [V]"""
        return self.part_ids == PART_NAMES.index(name)


def _into_tile(uv: np.ndarray, tile: tuple[float, float, float, float]) -> np.ndarray:
    u0, v0, u1, v1 = tile
    return np.stack([u0 + uv[:, 0] * (u1 - u0), v0 + uv[:, 1] * (v1 - v0)], 1)


def build_head() -> Head:
    """Build the shell, add the mouth bag, ears and eyeballs, and lay out one texture atlas."""
    shell = build_shell()
    pieces = []  # (part name, Part, tile)
    base = shell.vertices.shape[0]
    bag = parts.mouth_bag(shell.vertices, shell.mouth_upper, shell.mouth_lower, base)
    pieces.append(("mouth", bag, MOUTH_TILE))
    base += bag.vertices.shape[0]
    for name, builder, side, tile in (("ear_left", parts.ear, 1.0, EAR_TILE), ("ear_right", parts.ear, -1.0, EAR_TILE),
                                      ("eye_left", parts.eyeball, 1.0, EYE_TILE),
                                      ("eye_right", parts.eyeball, -1.0, EYE_TILE)):
        piece = builder(side, base)
        pieces.append((name, piece, tile))
        base += piece.vertices.shape[0]
    shell_uv = _into_tile(shell.uv.reshape(-1, 2), SHELL_TILE)
    vt, ft, faces = [shell_uv], [shell.faces_uv], [shell.faces]
    part_ids = [np.zeros(shell.vertices.shape[0], dtype=np.int64)]
    face_parts = [np.zeros(shell.faces.shape[0], dtype=np.int64)]
    offset = shell_uv.shape[0]
    for name, piece, tile in pieces:
        vt.append(_into_tile(piece.uv, tile))
        ft.append(piece.faces_uv + offset)
        offset += piece.uv.shape[0]
        faces.append(piece.faces)
        part_ids.append(np.full(piece.vertices.shape[0], PART_NAMES.index(name)))
        face_parts.append(np.full(piece.faces.shape[0], PART_NAMES.index(name)))
    return Head(vertices=np.concatenate([shell.vertices] + [p.vertices for _, p, _ in pieces]),
                faces=np.concatenate(faces), vt=np.concatenate(vt), ft=np.concatenate(ft),
                part_ids=np.concatenate(part_ids), face_parts=np.concatenate(face_parts), shell=shell,
                mouth_loop=parts.mouth_loop(shell.mouth_upper, shell.mouth_lower))
