"""The 3DGS PLY: exact layout, round trips, foreign variants, and only `GaussianPlyError` on bad files."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from plyfile import PlyData, PlyElement

from backend.avatar import GaussianPlyError, StaticGaussians, read_ply, write_ply
from backend.avatar.ply import ply_property_names

FUZZ = settings(max_examples=40, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])


def random_gaussians(n: int, degree: int, seed: int, binding: bool = False) -> StaticGaussians:
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator)

    return StaticGaussians(means=randn(n, 3), quats=torch.nn.functional.normalize(randn(n, 4), dim=-1),
                           log_scales=randn(n, 3) - 4, opacity_logits=randn(n) * 3, sh=randn(n, (degree + 1) ** 2, 3),
                           binding=torch.randint(0, 10_000, (n,), generator=generator) if binding else None)


def assert_same(read: StaticGaussians, written: StaticGaussians) -> None:
    for name in ("means", "quats", "log_scales", "opacity_logits", "sh"):
        assert torch.equal(getattr(read, name), getattr(written, name)), name


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_written_layout_is_the_standard_one(tmp_path, degree):
    gaussians = random_gaussians(7, degree, seed=degree)
    path = write_ply(tmp_path / "splat.ply", gaussians)
    data = PlyData.read(str(path))
    assert not data.text and data.byte_order == "<" and [e.name for e in data.elements] == ["vertex"]
    properties = data["vertex"].properties
    rest = [f"f_rest_{i}" for i in range(3 * ((degree + 1) ** 2 - 1))]
    assert [p.name for p in properties] == ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2", *rest,
                                            "opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2",
                                            "rot_3"]
    assert [p.name for p in properties] == ply_property_names(degree)
    assert {p.val_dtype for p in properties} == {"f4"}
    rows = data["vertex"].data
    assert (rows["nx"] == 0).all() and np.array_equal(rows["opacity"], gaussians.opacity_logits.numpy())
    assert np.array_equal(rows["rot_0"], gaussians.quats[:, 0].numpy())  # w first
    if degree:
        k = (degree + 1) ** 2 - 1  # channel-major: all red coefficients, then green, then blue
        assert np.array_equal(rows["f_rest_0"], gaussians.sh[:, 1, 0].numpy())
        assert np.array_equal(rows[f"f_rest_{k}"], gaussians.sh[:, 1, 1].numpy())
        assert np.array_equal(rows[f"f_rest_{2 * k + 1}"], gaussians.sh[:, 2, 2].numpy())


def test_binding_is_written_only_when_asked(tmp_path):
    gaussians = random_gaussians(5, 1, seed=0, binding=True)
    plain = PlyData.read(str(write_ply(tmp_path / "plain.ply", gaussians)))
    assert "binding_0" not in [p.name for p in plain["vertex"].properties]
    path = write_ply(tmp_path / "bound.ply", gaussians, binding=True)
    assert PlyData.read(str(path))["vertex"].properties[-1].name == "binding_0"
    assert torch.equal(read_ply(path).binding, gaussians.binding)
    with pytest.raises(ValueError, match="no binding"):
        write_ply(tmp_path / "x.ply", random_gaussians(5, 1, seed=0), binding=True)


@FUZZ
@given(n=st.integers(0, 30), degree=st.integers(0, 3), seed=st.integers(0, 2**16), binding=st.booleans())
def test_random_gaussians_round_trip(n, degree, seed, binding):
    gaussians = random_gaussians(n, degree, seed, binding)
    with tempfile.TemporaryDirectory() as folder:
        back = read_ply(write_ply(Path(folder) / "splat.ply", gaussians, binding=binding))
    assert_same(back, gaussians)
    assert (back.binding is None) == (not binding)
    assert back.sh_degree == degree


@FUZZ
@given(n=st.integers(1, 12), degree=st.integers(0, 3), seed=st.integers(0, 2**16), text=st.booleans(),
       byte_order=st.sampled_from(["<", ">"]), dtype=st.sampled_from(["f4", "f8"]), normals=st.booleans(),
       extras=st.integers(0, 3), shuffle=st.booleans())
def test_foreign_3dgs_files_are_read(n, degree, seed, text, byte_order, dtype, normals, extras, shuffle):
    """ascii or binary, either endianness, float or double, with or without normals, extra properties, any
    property order, and other elements: all read to the same Gaussians."""
    gaussians = random_gaussians(n, degree, seed)
    names = [name for name in ply_property_names(degree) if normals or name not in ("nx", "ny", "nz")]
    names += [f"extra_{i}" for i in range(extras)]
    rng = np.random.default_rng(seed)
    if shuffle:
        names = list(rng.permutation(names))
    values = {"x": gaussians.means[:, 0], "y": gaussians.means[:, 1], "z": gaussians.means[:, 2],
              "opacity": gaussians.opacity_logits, **{f"scale_{i}": gaussians.log_scales[:, i] for i in range(3)},
              **{f"rot_{i}": gaussians.quats[:, i] for i in range(4)},
              **{f"f_dc_{i}": gaussians.sh[:, 0, i] for i in range(3)}}
    rest = gaussians.sh[:, 1:].transpose(1, 2).reshape(n, -1)
    values.update({f"f_rest_{i}": rest[:, i] for i in range(rest.shape[1])})
    table = np.empty(n, dtype=[(name, dtype) for name in names])
    for name in names:
        table[name] = values[name].numpy() if name in values else rng.normal(size=n)
    camera = np.zeros(1, dtype=[("fov", "f4")])
    data = PlyData([PlyElement.describe(table, "vertex"), PlyElement.describe(camera, "camera")], text=text,
                   byte_order=byte_order)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "foreign.ply"
        data.write(str(path))
        back = read_ply(path)
    assert_same(back, gaussians)


@FUZZ
@given(seed=st.integers(0, 2**16), cut=st.floats(0.0, 1.0), flips=st.lists(st.tuples(st.floats(0, 1),
                                                                                     st.integers(0, 255)), max_size=4),
       text=st.booleans())
def test_corrupt_files_raise_only_the_documented_error(seed, cut, flips, text):
    gaussians = random_gaussians(6, seed % 4, seed)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "splat.ply"
        write_ply(path, gaussians)
        if text:
            data = PlyData.read(str(path), mmap=False)  # not mapped: the file is rewritten below
            PlyData(data.elements, text=True).write(str(path))
        raw = bytearray(path.read_bytes())
        for where, value in flips:
            raw[min(int(where * len(raw)), len(raw) - 1)] = value
        path.write_bytes(bytes(raw[:max(1, int(cut * len(raw))) if cut < 1 else len(raw)]))
        try:
            back = read_ply(path)
        except GaussianPlyError as error:
            assert str(path) in str(error)
        else:
            assert torch.isfinite(back.means).all() and torch.isfinite(back.quats).all()


def write_table(path: Path, **columns: np.ndarray) -> Path:
    table = np.empty(len(next(iter(columns.values()))), dtype=[(name, "f4") for name in columns])
    for name, column in columns.items():
        table[name] = column
    PlyData([PlyElement.describe(table, "vertex")]).write(str(path))
    return path


def test_a_mesh_ply_is_not_a_splat_file(tmp_path):
    vertices = np.array([(0.0, 0.0, 0.0), (1.0, 0.0, 0.0), (0.0, 1.0, 0.0)], dtype=[("x", "f4"), ("y", "f4"),
                                                                                   ("z", "f4")])
    faces = np.array([([0, 1, 2],)], dtype=[("vertex_indices", "i4", (3,))])
    path = tmp_path / "mesh.ply"
    PlyData([PlyElement.describe(vertices, "vertex"), PlyElement.describe(faces, "face")]).write(str(path))
    with pytest.raises(GaussianPlyError, match=r"mesh\.ply: is not a 3DGS splat file.*'opacity'.*'rot_0'"):
        read_ply(path)


def test_quaternions_are_normalised_on_load(tmp_path):
    columns = {name: np.ones(2) for name in ply_property_names(0)}
    columns.update(rot_0=np.array([2.0, 0.0]), rot_1=np.array([0.0, 0.0]), rot_2=np.array([0.0, 3.0]))
    quats = read_ply(write_table(tmp_path / "q.ply", **columns)).quats
    torch.testing.assert_close(quats, torch.tensor([[2.0, 0, 0, 1], [0, 0, 3, 1]]) / torch.tensor([[5**0.5], [10**0.5]]))


def test_specific_problems_are_named(tmp_path):
    base = {name: np.ones(2) for name in ply_property_names(0)}
    missing_rot = {name: value for name, value in base.items() if name != "rot_3"}
    with pytest.raises(GaussianPlyError, match=r"lacks \['rot_3'\]"):
        read_ply(write_table(tmp_path / "a.ply", **missing_rot))
    with pytest.raises(GaussianPlyError, match="f_rest properties"):
        read_ply(write_table(tmp_path / "b.ply", **base, **{f"f_rest_{i}": np.ones(2) for i in range(5)}))
    with pytest.raises(GaussianPlyError, match="'scale_1' has 1 non-finite"):
        read_ply(write_table(tmp_path / "c.ply", **{**base, "scale_1": np.array([1.0, np.nan])}))
    with pytest.raises(GaussianPlyError, match="zero quaternion"):
        read_ply(write_table(tmp_path / "d.ply", **{**base, **{f"rot_{i}": np.zeros(2) for i in range(4)}}))
    with pytest.raises(GaussianPlyError, match="binding_0"):
        read_ply(write_table(tmp_path / "e.ply", **base, binding_0=np.array([0.5, 1.0])))
    with pytest.raises(GaussianPlyError, match="file not found"):
        read_ply(tmp_path / "missing.ply")
    (tmp_path / "junk.ply").write_bytes(b"not a ply at all")
    with pytest.raises(GaussianPlyError, match="cannot be read as a PLY"):
        read_ply(tmp_path / "junk.ply")
    points = np.zeros(2, dtype=[("x", "f4")])
    PlyData([PlyElement.describe(points, "points")]).write(str(tmp_path / "f.ply"))
    with pytest.raises(GaussianPlyError, match="no 'vertex' element"):
        read_ply(tmp_path / "f.ply")
