"""Mesh export: OBJ / PLY / GLB written with trimesh and read back with trimesh."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from backend.track.mesh_export import export_mesh, export_mesh_sequence

# A unit square of two triangles with a UV seam along the diagonal: 4 vertices, 6 UV coordinates.
VERTICES = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.1]])
FACES = np.array([[0, 1, 2], [1, 3, 2]])
UV = np.array([[0.0, 0.0], [0.5, 0.0], [0.0, 0.5], [0.5, 0.5], [1.0, 1.0], [0.6, 0.6]])
UV_FACES = np.array([[0, 1, 2], [3, 4, 5]])
TEXTURE = np.random.default_rng(0).integers(0, 256, (16, 8, 3), dtype=np.uint8)


def _load(path):
    return trimesh.load(path, force="mesh", process=False)


@pytest.mark.parametrize("fmt", ["obj", "ply", "glb"])
def test_plain_mesh_round_trip(tmp_path, fmt):
    path = export_mesh(VERTICES, FACES, tmp_path / f"head.{fmt}")
    mesh = _load(path)
    np.testing.assert_allclose(mesh.vertices, VERTICES, atol=1e-6)
    np.testing.assert_array_equal(mesh.faces, FACES)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"head.{fmt}"]


@pytest.mark.parametrize("fmt", ["obj", "ply", "glb"])
def test_per_vertex_uv_keeps_the_vertex_order(tmp_path, fmt):
    uv = VERTICES[:, :2] * 0.5
    mesh = _load(export_mesh(VERTICES, FACES, tmp_path / f"head.{fmt}", uv=uv))
    np.testing.assert_allclose(mesh.vertices, VERTICES, atol=1e-6)
    np.testing.assert_allclose(mesh.visual.uv, uv, atol=1e-6)


@pytest.mark.parametrize("fmt", ["obj", "glb"])
def test_seams_and_texture(tmp_path, fmt):
    path = export_mesh(VERTICES, FACES, tmp_path / f"my head.{fmt}", uv=UV, uv_faces=UV_FACES, texture=TEXTURE)
    mesh = _load(path)
    assert len(mesh.vertices) == 6  # every (vertex, uv) corner pair is distinct here
    corners = mesh.vertices[mesh.faces]  # [F, 3, 3]: the same triangles as the input
    np.testing.assert_allclose(corners, VERTICES[FACES], atol=1e-6)
    np.testing.assert_allclose(mesh.visual.uv[mesh.faces], UV[UV_FACES], atol=1e-6)
    material = mesh.visual.material  # OBJ reads back a SimpleMaterial, GLB a PBRMaterial
    image = np.asarray(getattr(material, "image", None) or material.baseColorTexture)[..., :3]
    np.testing.assert_array_equal(image, TEXTURE)
    if fmt == "obj":
        assert sorted(p.name for p in tmp_path.iterdir()) == ["my head.obj", "my_head.mtl", "my_head.png"]


def test_sequence(tmp_path):
    frames = np.stack([VERTICES + [0.0, 0.0, 0.1 * t] for t in range(3)])
    paths = export_mesh_sequence(frames, FACES, tmp_path / "seq", "obj", uv=UV, uv_faces=UV_FACES, texture=TEXTURE,
                                 first_index=10)
    assert [p.name for p in paths] == ["00010.obj", "00011.obj", "00012.obj"]
    assert sorted(p.name for p in (tmp_path / "seq").iterdir()) == [
        "00010.obj", "00011.obj", "00012.obj", "material.mtl", "material.png"]
    for t, path in enumerate(paths):
        mesh = _load(path)
        np.testing.assert_allclose(mesh.vertices[mesh.faces], frames[t][FACES], atol=1e-6)
        assert np.asarray(mesh.visual.material.image).shape[:2] == (16, 8)
    for fmt in ("ply", "glb"):
        paths = export_mesh_sequence(frames, FACES, tmp_path / fmt, fmt)
        np.testing.assert_allclose(_load(paths[2]).vertices, frames[2], atol=1e-6)


def test_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="unsupported mesh format 'stl'"):
        export_mesh(VERTICES, FACES, tmp_path / "x.stl")
    with pytest.raises(ValueError, match=r"vertices must be a non-empty real \[V, 3\] array"):
        export_mesh(VERTICES[:, :2], FACES, tmp_path / "x.obj")
    with pytest.raises(ValueError, match="NaN/inf at rows"):
        export_mesh(np.where(VERTICES == 1.0, np.nan, VERTICES), FACES, tmp_path / "x.obj")
    with pytest.raises(TypeError, match="faces must hold integers"):
        export_mesh(VERTICES, FACES.astype(float), tmp_path / "x.obj")
    with pytest.raises(ValueError, match="faces index out of range: min 1, max 4, 4 vertices"):
        export_mesh(VERTICES, FACES + 1, tmp_path / "x.obj")
    with pytest.raises(ValueError, match="texture needs uv"):
        export_mesh(VERTICES, FACES, tmp_path / "x.obj", texture=TEXTURE)
    with pytest.raises(ValueError, match="PLY has no standard way"):
        export_mesh(VERTICES, FACES, tmp_path / "x.ply", uv=UV, uv_faces=UV_FACES, texture=TEXTURE)
    with pytest.raises(ValueError, match="per-vertex uv must have one row per vertex"):
        export_mesh(VERTICES, FACES, tmp_path / "x.obj", uv=UV)
    with pytest.raises(TypeError, match="texture must be uint8"):
        export_mesh(VERTICES, FACES, tmp_path / "x.obj", uv=UV, uv_faces=UV_FACES, texture=TEXTURE / 255.0)
    with pytest.raises(ValueError, match=r"vertices must have shape \[T, V, 3\]"):
        export_mesh_sequence(VERTICES, FACES, tmp_path / "seq")
    assert not any(tmp_path.iterdir())  # nothing half-written
