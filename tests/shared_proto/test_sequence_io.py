"""FlameSequence <-> .npz (VHAP keys) / JSON: round trips, VHAP compatibility, atomic writes, fuzzed loaders."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared_proto.errors import ProtocolError
from shared_proto.sequence_io import load_sequence_json, load_sequence_npz, save_sequence_json, save_sequence_npz
from shared_proto.types import FlameSequence


def make_sequence(frames: int = 5, eyelids: bool = True, seed: int = 0, fps: float = 30.0, frame_start: int = 1):
    rng = np.random.default_rng(seed)
    return FlameSequence(
        shape=rng.normal(0, 1, 300), expression=rng.normal(0, 1, (frames, 100)),
        rotation=rng.normal(0, 0.2, (frames, 3)), neck=rng.normal(0, 0.1, (frames, 3)),
        jaw=rng.normal(0, 0.1, (frames, 3)), eyes=rng.normal(0, 0.1, (frames, 6)),
        translation=rng.normal(0, 0.05, (frames, 3)),
        eyelids=rng.uniform(0, 1, (frames, 2)) if eyelids else None, fps=fps, frame_start=frame_start)


def assert_same(a: FlameSequence, b: FlameSequence) -> None:
    for name in ("shape", "expression", "rotation", "neck", "jaw", "eyes", "translation", "eyelids"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            np.testing.assert_array_equal(x, y, err_msg=name)  # bit-exact
    assert (a.fps, a.frame_start) == (b.fps, b.frame_start)


@pytest.mark.parametrize("eyelids", [True, False])
@pytest.mark.parametrize("save,load,suffix", [(save_sequence_npz, load_sequence_npz, ".npz"),
                                              (save_sequence_json, load_sequence_json, ".json")])
def test_round_trip_is_exact(tmp_path, eyelids, save, load, suffix):
    sequence = make_sequence(eyelids=eyelids, frame_start=-12)
    path = save(sequence, tmp_path / f"take{suffix}")
    assert path == tmp_path / f"take{suffix}"
    assert_same(load(path), sequence)
    assert [p.name for p in tmp_path.iterdir()] == [f"take{suffix}"]  # no temporary left behind


def test_npz_uses_vhap_key_names(tmp_path):
    save_sequence_npz(make_sequence(frames=2), tmp_path / "seq.npz")
    with np.load(tmp_path / "seq.npz") as data:
        assert sorted(data.files) == sorted(["shape", "expr", "rotation", "neck_pose", "jaw_pose", "eyes_pose",
                                             "translation", "eyelids", "fps", "frame_start"])
        assert data["expr"].shape == (2, 100) and data["fps"].dtype == np.float64


def test_reads_a_vhap_tracked_flame_params_archive(tmp_path):
    rng = np.random.default_rng(1)
    frames = 4
    vhap = {"rotation": rng.normal(0, 0.1, (frames, 3)), "translation": rng.normal(0, 0.1, (frames, 3)),
            "neck_pose": rng.normal(0, 0.1, (frames, 3)), "jaw_pose": rng.normal(0, 0.1, (frames, 3)),
            "eyes_pose": rng.normal(0, 0.1, (frames, 6)), "shape": rng.normal(0, 1, 300),
            "expr": rng.normal(0, 1, (frames, 100)), "timestep_id": np.array(["00000", "00001", "00002", "00003"]),
            "n_processed_frames": np.array(4), "focal_length": np.array([1.5]), "tex": np.zeros(100),
            "lights": np.zeros((9, 3)), "static_offset": np.zeros((1, 5143, 3)), "image_size": np.array([512, 512])}
    np.savez(tmp_path / "tracked_flame_params_30.npz", **{k: v.astype(np.float32) if v.dtype.kind == "f" else v
                                                            for k, v in vhap.items()})
    sequence = load_sequence_npz(tmp_path / "tracked_flame_params_30.npz")
    assert len(sequence) == 4 and sequence.fps == 25.0 and sequence.frame_start == 0 and sequence.eyelids is None
    np.testing.assert_allclose(sequence.jaw, vhap["jaw_pose"], atol=1e-6)
    np.testing.assert_allclose(sequence.shape, vhap["shape"], atol=1e-6)


def test_json_is_readable(tmp_path):
    save_sequence_json(make_sequence(frames=3), tmp_path / "seq.json")
    text = (tmp_path / "seq.json").read_text()
    data = json.loads(text)
    assert data["format"] == "keyface.flame_sequence" and data["version"] == 1 and data["fps"] == 30.0
    assert len(data["expression"]) == 3 and len(data["expression"][0]) == 100
    assert all(isinstance(v, float) for v in data["jaw"][0])
    assert text.count("\n") < 60  # one frame per line (3 frames x 7 fields), not one number per line (> 1000)


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path, monkeypatch):
    path = save_sequence_json(make_sequence(frames=2), tmp_path / "seq.json")
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        save_sequence_json(make_sequence(frames=3, seed=4), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["seq.json"]


def test_bad_arguments_and_missing_files(tmp_path):
    with pytest.raises(TypeError, match="FlameSequence"):
        save_sequence_npz({"shape": []}, tmp_path / "x.npz")
    with pytest.raises(FileNotFoundError):
        load_sequence_npz(tmp_path / "absent.npz")
    with pytest.raises(FileNotFoundError):
        load_sequence_json(tmp_path / "absent.json")


def test_error_messages_name_the_file_and_the_problem(tmp_path):
    path = tmp_path / "seq.npz"
    arrays = {"shape": np.zeros(10), "expr": np.zeros((2, 10)), "rotation": np.zeros((2, 3)),
              "neck_pose": np.zeros((2, 3)), "jaw_pose": np.zeros((2, 3)), "translation": np.zeros((2, 3))}
    np.savez(path, **arrays)
    with pytest.raises(ProtocolError, match=r"seq\.npz: missing arrays \['eyes_pose'\]"):
        load_sequence_npz(path)
    np.savez(path, **arrays, eyes_pose=np.full((2, 6), np.nan))
    with pytest.raises(ProtocolError, match=r"seq\.npz: eyes has non-finite values"):
        load_sequence_npz(path)
    np.savez(path, **arrays, eyes_pose=np.zeros((3, 6)))
    with pytest.raises(ProtocolError, match=r"eyes must have shape \[2, 6\], got \[3, 6\]"):
        load_sequence_npz(path)
    np.savez(path, **arrays, eyes_pose=np.zeros((2, 6)), fps=np.array([25.0, 30.0]))
    with pytest.raises(ProtocolError, match="'fps' must hold one number"):
        load_sequence_npz(path)
    json_path = tmp_path / "seq.json"
    json_path.write_text(json.dumps({"format": "keyface.flame_sequence", "version": 1, "shape": [0.0],
                                     "expression": [[0.0]], "rotation": [[0, 0, 0]], "neck": [[0, 0, 0]],
                                     "jaw": [[0, 0, "0"]], "eyes": [[0] * 6], "translation": [[0, 0, 0]]}))
    with pytest.raises(ProtocolError, match=r"seq\.json: 'jaw' must hold numbers, found '0'"):
        load_sequence_json(json_path)
    document = json.loads(json_path.read_text())
    document["jaw"] = [[0, 0, 0]]
    document["fps"] = 10**400
    json_path.write_text(json.dumps(document))
    with pytest.raises(ProtocolError, match="'fps' holds an integer too large for a float"):
        load_sequence_json(json_path)
    json_path.write_text(json.dumps({"format": "other"}))
    with pytest.raises(ProtocolError, match="'format' must be 'keyface.flame_sequence'"):
        load_sequence_json(json_path)


def _valid_files(root: Path) -> tuple[Path, Path]:
    sequence = make_sequence(frames=2, seed=7)
    return save_sequence_npz(sequence, root / "seq.npz"), save_sequence_json(sequence, root / "seq.json")


_JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10**400, 10**400), st.floats(), st.text(max_size=4)),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=3), children, max_size=3),
    max_leaves=12)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_loaders_raise_only_protocol_errors(damage, data):
    with tempfile.TemporaryDirectory() as tmp:
        npz_path, json_path = _valid_files(Path(tmp))
        target = data.draw(st.sampled_from([npz_path, json_path]))
        mode = data.draw(st.sampled_from(["truncate", "flip", "field"]))
        if mode in ("truncate", "flip"):
            damage(target, data, mode)
        elif target == json_path:
            document = json.loads(target.read_bytes())
            key = data.draw(st.sampled_from(sorted(document) + ["extra"]))
            if data.draw(st.booleans()):
                document.pop(key, None)
            else:
                document[key] = data.draw(_JSON_VALUES)
            target.write_text(json.dumps(document))
        else:
            with np.load(npz_path) as archive:
                arrays = dict(archive)
            key = data.draw(st.sampled_from(sorted(arrays)))
            arrays[key] = data.draw(st.sampled_from([np.zeros(0), np.array(["a"]), np.full((2, 3), np.inf),
                                                     np.zeros((2, 2, 2)), np.array(1e40), np.array([True]),
                                                     np.zeros((2, 6), np.complex64),
                                                     np.array(np.inf), np.array(np.nan), np.array(2.5)]))
            np.savez(npz_path, **arrays)
        load = load_sequence_npz if target == npz_path else load_sequence_json
        try:
            assert isinstance(load(target), FlameSequence)
        except ProtocolError as error:
            assert str(target) in str(error)
