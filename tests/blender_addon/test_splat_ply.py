"""The add-on's numpy 3DGS PLY reader: parity with the backend's reader, every foreign variant, subsets, and only
`ValueError` (naming the file) on bad input."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from plyfile import PlyData, PlyElement

from backend.avatar import StaticGaussians, read_ply, write_ply
from blender_addon.splat_ply import SH_C0, SplatCloud, read_splat_ply, subset_indices

FUZZ = settings(max_examples=40, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])


def random_gaussians(n: int, degree: int, seed: int) -> StaticGaussians:
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator)

    return StaticGaussians(means=randn(n, 3), quats=randn(n, 4), log_scales=randn(n, 3) - 4,
                           opacity_logits=randn(n) * 3, sh=randn(n, (degree + 1) ** 2, 3))


def assert_matches_backend(cloud: SplatCloud, path: Path, rows: np.ndarray | None = None) -> None:
    """`cloud` decodes what backend.avatar.read_ply reads from `path` (rows: the subset kept)."""
    ref = read_ply(path)
    pick = slice(None) if rows is None else rows
    np.testing.assert_allclose(cloud.positions, ref.means.numpy()[pick], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(cloud.sh_dc, ref.sh[:, 0].numpy()[pick], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(cloud.colours, 0.5 + SH_C0 * ref.sh[:, 0].numpy()[pick], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(cloud.opacity, torch.sigmoid(ref.opacity_logits).numpy()[pick], rtol=1e-5,
                               atol=1e-7)
    np.testing.assert_allclose(cloud.scales, ref.log_scales.exp().numpy()[pick], rtol=1e-5)
    np.testing.assert_allclose(cloud.rotations, ref.quats.numpy()[pick], atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(cloud.rotations, axis=1), 1.0, atol=1e-6)
    if ref.sh.shape[1] == 1:
        assert cloud.f_rest is None and cloud.sh_degree == 0
    else:
        np.testing.assert_allclose(cloud.f_rest, ref.sh[:, 1:].numpy()[pick], rtol=1e-6, atol=1e-7)
        assert cloud.sh_degree == {4: 1, 9: 2, 16: 3}[ref.sh.shape[1]]
    assert cloud.total == ref.n and all(a.dtype == np.float32 for a in (cloud.positions, cloud.colours, cloud.scales))


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_parity_with_the_backend_reader_on_written_files(tmp_path, degree):
    path = write_ply(tmp_path / "splat.ply", random_gaussians(11, degree, seed=degree))
    cloud = read_splat_ply(path)
    assert cloud.count == 11
    assert_matches_backend(cloud, path)


def test_decoding_follows_the_3dgs_conventions(tmp_path):
    gaussians = StaticGaussians(means=torch.tensor([[1.0, 2.0, 3.0]]), quats=torch.tensor([[2.0, 0.0, 0.0, 0.0]]),
                                log_scales=torch.log(torch.tensor([[0.1, 0.2, 0.4]])),
                                opacity_logits=torch.tensor([0.0]), sh=torch.tensor([[[1.0, 0.0, -1.0]]]))
    cloud = read_splat_ply(write_ply(tmp_path / "one.ply", gaussians))
    np.testing.assert_allclose(cloud.colours[0], [0.5 + 0.28209479, 0.5, 0.5 - 0.28209479], atol=1e-6)
    np.testing.assert_allclose(cloud.opacity, [0.5])
    np.testing.assert_allclose(cloud.scales[0], [0.1, 0.2, 0.4], rtol=1e-6)
    np.testing.assert_array_equal(cloud.rotations[0], [1, 0, 0, 0])  # normalised, w first


def write_foreign(path: Path, gaussians: StaticGaussians, *, text: bool, byte_order: str, dtype: str, normals: bool,
                  extra: bool, shuffle: int, element_before: bool, element_after: bool) -> Path:
    """The Gaussians as a 3DGS PLY the way other tools write them (plyfile is only a test dependency)."""
    n = gaussians.n
    sh = gaussians.sh.numpy()
    rest = sh[:, 1:].transpose(0, 2, 1).reshape(n, -1)  # channel-major
    columns = {"x": gaussians.means[:, 0], "y": gaussians.means[:, 1], "z": gaussians.means[:, 2]}
    if normals:
        columns.update(nx=np.zeros(n), ny=np.zeros(n), nz=np.ones(n))
    columns.update({f"f_dc_{i}": sh[:, 0, i] for i in range(3)})
    columns.update({f"f_rest_{i}": rest[:, i] for i in range(rest.shape[1])})
    columns["opacity"] = gaussians.opacity_logits
    columns.update({f"scale_{i}": gaussians.log_scales[:, i] for i in range(3)})
    columns.update({f"rot_{i}": gaussians.quats[:, i] for i in range(4)})
    if extra:
        columns.update(red=np.full(n, 200), label=np.arange(n))
    names = list(columns)
    names = names[shuffle % len(names):] + names[:shuffle % len(names)]
    types = {"red": "u1", "label": "i4"}
    table = np.empty(n, dtype=[(name, types.get(name, dtype)) for name in names])
    for name in names:
        table[name] = np.asarray(columns[name])
    elements = [PlyElement.describe(table, "vertex")]
    if element_before:
        elements.insert(0, PlyElement.describe(np.array([(1.5, 7)], dtype=[("fov", "f4"), ("id", "i2")]), "camera"))
    if element_after:
        faces = np.empty(2, dtype=[("vertex_indices", "O")])
        faces["vertex_indices"] = [np.array([0, 1, 2], "i4"), np.array([2, 1, 0, 3], "i4")]
        elements.append(PlyElement.describe(faces, "face"))
    PlyData(elements, text=text, byte_order=byte_order, comments=["written by some other splat tool"]).write(str(path))
    return path


@FUZZ
@given(degree=st.integers(0, 3), text=st.booleans(), byte_order=st.sampled_from(["<", ">"]),
       dtype=st.sampled_from(["f4", "f8"]), normals=st.booleans(), extra=st.booleans(), shuffle=st.integers(0, 80),
       element_before=st.booleans(), element_after=st.booleans())
def test_foreign_variants_match_the_backend_reader(degree, text, byte_order, dtype, normals, extra, shuffle,
                                                   element_before, element_after):
    with tempfile.TemporaryDirectory() as tmp:
        path = write_foreign(Path(tmp) / "foreign.ply", random_gaussians(5, degree, seed=shuffle), text=text,
                             byte_order=byte_order, dtype=dtype, normals=normals, extra=extra, shuffle=shuffle,
                             element_before=element_before, element_after=element_after)
        assert_matches_backend(read_splat_ply(path), path)


@pytest.mark.parametrize("text", [False, True])
def test_max_points_keeps_an_evenly_spaced_subset(tmp_path, text):
    gaussians = random_gaussians(100, 1, seed=3)
    path = write_foreign(tmp_path / "big.ply", gaussians, text=text, byte_order="<", dtype="f4", normals=True,
                         extra=False, shuffle=0, element_before=False, element_after=False)
    cloud = read_splat_ply(path, max_points=7)
    rows = subset_indices(100, 7)
    assert cloud.count == 7 and cloud.total == 100 and rows[0] == 0 and rows[-1] == 99
    assert (np.diff(rows) > 0).all()
    assert_matches_backend(cloud, path, rows)
    assert read_splat_ply(path, max_points=1000).count == 100


def test_bad_arguments(tmp_path):
    path = write_ply(tmp_path / "splat.ply", random_gaussians(3, 0, seed=0))
    with pytest.raises(ValueError, match="max_points must be >= 1"):
        read_splat_ply(path, max_points=0)
    with pytest.raises(TypeError, match="max_points must be an int"):
        read_splat_ply(path, max_points=2.5)
    with pytest.raises(ValueError, match=r"missing\.ply: file not found"):
        read_splat_ply(tmp_path / "missing.ply")


def header(*lines: str, fmt: str = "binary_little_endian") -> bytes:
    return ("\n".join(["ply", f"format {fmt} 1.0", *lines, "end_header"]) + "\n").encode()


GAUSSIAN_PROPERTIES = [f"property float {name}" for name in
                       ("x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
                        "rot_0", "rot_1", "rot_2", "rot_3")]


@pytest.mark.parametrize("content, fragment", [
    (b"", "is not a PLY file"),
    (b"solid cube\nfacet normal 0 0 1\n", "is not a PLY file"),
    (b"ply\nformat binary_little_endian 1.0\nelement vertex 3\n", "no 'end_header'"),
    (header("element vertex 1", "property float x", "property float y", "property float z",
            "element face 0", "property list uchar int vertex_indices") + bytes(12),
     "not a 3DGS splat file .a mesh or point cloud.*lacks .'f_dc_0'"),
    (header("element vertex 1", *GAUSSIAN_PROPERTIES, fmt="binary_middle_endian"), "unsupported format"),
    (header("element vertex 1", "property quaternion q"), "bad property line"),
    (header("element vertex 1", *GAUSSIAN_PROPERTIES, "property float f_rest_0"), "1 f_rest properties"),
    (header("element vertex 1", *GAUSSIAN_PROPERTIES, "property float x"), "property 'x' twice"),
    (header("element vertex 2", *GAUSSIAN_PROPERTIES) + bytes(14 * 4), "is truncated"),
    (header("element vertex 1", *GAUSSIAN_PROPERTIES) + bytes(14 * 4), "zero quaternion"),
    (header("element vertex 1", *GAUSSIAN_PROPERTIES) + np.full(14, np.inf, "<f4").tobytes(), "non-finite"),
    (header("element vertex 2", *GAUSSIAN_PROPERTIES, fmt="ascii") + b"1 " * 14 + b"\n", "is truncated"),
    (header("element vertex 1", *GAUSSIAN_PROPERTIES, fmt="ascii") + b"1 2 three\n", "not a number"),
    (header("element vertex 1", *GAUSSIAN_PROPERTIES, fmt="ascii") + b"1 2 3\n", "wrong number of values"),
    (header("element vertex 1", *GAUSSIAN_PROPERTIES, "element vertex 1", *GAUSSIAN_PROPERTIES), "2 'vertex'"),
    (header("element camera 1", "property list uchar float fov", "element vertex 1", *GAUSSIAN_PROPERTIES)
     + bytes(100), "before 'vertex' has list properties"),
    (header("comment " + "x" * 70_000), "no 'end_header'"),
])
def test_bad_files_raise_value_errors_naming_the_file(tmp_path, content, fragment):
    path = tmp_path / "bad.ply"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=fragment) as caught:
        read_splat_ply(path)
    assert str(caught.value).startswith(str(path))


@FUZZ
@given(data=st.data())
def test_fuzz_only_value_errors(damage, data):
    degree = data.draw(st.integers(0, 3))
    text = data.draw(st.booleans())
    with tempfile.TemporaryDirectory() as tmp:
        path = write_foreign(Path(tmp) / "splat.ply", random_gaussians(4, degree, seed=1), text=text,
                             byte_order=data.draw(st.sampled_from(["<", ">"])), dtype="f4", normals=True, extra=True,
                             shuffle=0, element_before=data.draw(st.booleans()), element_after=True)
        damage(path, data, data.draw(st.sampled_from(["truncate", "flip"])))
        try:
            cloud = read_splat_ply(path, max_points=data.draw(st.sampled_from([None, 2])))
        except ValueError as error:
            assert str(error).startswith(str(path))
            return
        n = cloud.count
        assert cloud.positions.shape == (n, 3) and cloud.rotations.shape == (n, 4) and cloud.opacity.shape == (n,)
        assert np.isfinite(cloud.positions).all() and ((cloud.opacity >= 0) & (cloud.opacity <= 1)).all()
        np.testing.assert_allclose(np.linalg.norm(cloud.rotations, axis=1), 1.0, atol=1e-5)
