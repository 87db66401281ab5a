"""The extension zip: its manifest and bundled pyzmq wheels, Blender's own validator, 'Install from Disk' with the
wheels, the wheel cache, and talking to a real backend from inside Blender (bpy as a module)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

# Runs in a separate interpreter with only the extracted zip importable (no repo on sys.path), as Blender would.
DRIVER = """
import json, sys
sys.path.insert(0, sys.argv[1])
import bpy, keyface
keyface.register()
scene = bpy.context.scene
out = {}
try:
    bpy.ops.keyface.connect(address=sys.argv[2])
except RuntimeError as error:
    out["error"] = str(error)
out.update(connected=scene.keyface.connected, status=scene.keyface.status, device=scene.keyface.device,
           vendored=keyface.connection.Client.__module__, path=sys.modules["shared_proto"].__file__)
keyface.unregister()
print("RESULT" + json.dumps(out))
"""


def test_the_zip_vendors_the_protocol_and_declares_network_access(installed_addon) -> None:
    archive = next((installed_addon.parent / "dist").glob("keyface-*.zip"))
    names = zipfile.ZipFile(archive).namelist()
    assert "blender_manifest.toml" in names and "vendor/shared_client/client.py" in names
    assert not any("__pycache__" in name for name in names)
    manifest = tomllib.loads((installed_addon / "keyface" / "blender_manifest.toml").read_text())
    assert manifest["id"] == "keyface" and "network" in manifest["permissions"]


def run_in_blender(extensions: Path, address: str, cwd: Path) -> dict:
    result = subprocess.run([sys.executable, "-c", DRIVER, str(extensions), address], cwd=cwd,
                            capture_output=True, text=True, timeout=300, env={"PATH": "/usr/bin:/bin",
                                                                             **_home_env()})
    line = next((l for l in result.stdout.splitlines() if l.startswith("RESULT")), None)
    assert line, f"driver failed:\n{result.stdout}\n{result.stderr}"
    return json.loads(line[len("RESULT"):])


def _home_env() -> dict:
    import os

    return {name: os.environ[name] for name in ("HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME")}


def test_connect_operator_reaches_a_real_backend(installed_addon, shared_backend, tmp_path) -> None:
    out = run_in_blender(installed_addon, shared_backend.endpoint, tmp_path)
    assert out["connected"] and out["device"] == "cpu" and "keyface-backend" in out["status"]
    assert str(installed_addon) in out["path"]  # the vendored protocol, not the repository's


def test_connect_operator_reports_an_unreachable_backend(installed_addon, tmp_path) -> None:
    out = run_in_blender(installed_addon, "tcp://127.0.0.1:9", tmp_path)
    assert not out["connected"] and "no reply" in out["error"]


# --- manifest, wheels, Blender's validator, 'Install from Disk' -----------------------------------------------------

BPY_SCRIPTS = Path(importlib.util.find_spec("bpy").origin).parent / "5.0" / "scripts"
BLENDER_EXT = BPY_SCRIPTS / "addons_core" / "bl_pkg" / "cli" / "blender_ext.py"
VALID_TAGS = BPY_SCRIPTS / "modules" / "_bpy_internal" / "extensions" / "tags.py"
WHEEL_PYTHONS = {"3.11": ("cp311",), "3.13": ("cp313", "abi3")}  # CPython -> tags a wheel must carry for it


@pytest.fixture(scope="module")
def archive(installed_addon) -> Path:
    return next((installed_addon.parent / "dist").glob("keyface-*.zip"))


@pytest.fixture(scope="module")
def manifest(installed_addon) -> dict:
    return tomllib.loads((installed_addon / "keyface" / "blender_manifest.toml").read_text())


def _wheel_python_tags(name: str) -> set[str]:
    python, abi = name.split("-")[2:4]
    return {*python.split("."), *abi.split(".")}


def test_manifest_fields(manifest, archive) -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    source = tomllib.loads((REPO_ROOT / "blender_addon" / "blender_manifest.toml").read_text())
    assert archive.name == f"keyface-{project['version']}.zip"
    assert manifest["id"] == "keyface" and manifest["type"] == "add-on" and manifest["schema_version"] == "1.0.0"
    assert manifest["version"] == project["version"] == source["version"]
    assert manifest["blender_version_min"] == "4.2.0" and "blender_version_max" not in manifest
    assert manifest["permissions"]["network"] == "Talks to the Keyface backend over ZeroMQ"
    for text in (manifest["tagline"], *manifest["permissions"].values()):
        assert len(text) <= 64 and text[-1].isalnum(), text  # Blender's rule: short, no trailing punctuation
    assert all(re.fullmatch(r"SPDX:[A-Za-z0-9.+-]+", license) for license in manifest["license"])
    assert {key: value for key, value in manifest.items() if key not in ("wheels", "platforms")} == source


def test_every_listed_wheel_is_in_the_zip_and_covers_its_platforms(manifest, archive, build_module) -> None:
    with zipfile.ZipFile(archive) as opened:
        in_zip = {name for name in opened.namelist() if name.startswith("wheels/")}
        assert opened.testzip() is None
    listed = manifest["wheels"]
    assert all(wheel.startswith("./wheels/pyzmq-27.3.0-") for wheel in listed)
    assert {wheel[2:] for wheel in listed} == in_zip  # listed == bundled, nothing missing, nothing extra
    assert set(manifest["platforms"]) == {"linux-x64", "linux-arm64", "macos-x64", "macos-arm64", "windows-x64",
                                          "windows-arm64"}
    for platform in manifest["platforms"]:
        for python, tags in WHEEL_PYTHONS.items():
            serving = [w for w in listed if platform in build_module.blender_platforms(w.rsplit("/", 1)[1])
                       and _wheel_python_tags(w.rsplit("/", 1)[1]) & set(tags)]
            assert len(serving) == 1, (platform, python, serving)


def test_blender_platform_names_of_wheel_tags(build_module) -> None:
    platforms = build_module.blender_platforms
    assert platforms("pyzmq-27.3.0-cp311-cp311-manylinux_2_26_x86_64.manylinux_2_28_x86_64.whl") == ["linux-x64"]
    assert platforms("pyzmq-27.3.0-cp312-abi3-manylinux_2_28_aarch64.whl") == ["linux-arm64"]
    assert platforms("pyzmq-27.3.0-cp311-cp311-macosx_10_15_universal2.whl") == ["macos-arm64", "macos-x64"]
    assert platforms("x-1-cp311-cp311-win_amd64.whl") == ["windows-x64"]
    assert platforms("x-1-cp311-cp311-win_arm64.whl") == ["windows-arm64"]
    with pytest.raises(SystemExit):
        platforms("x-1-cp311-cp311-linux_riscv64.whl")


@pytest.mark.skipif(not BLENDER_EXT.exists(), reason="bpy's extension tool (bl_pkg) not found")
def test_blenders_validator_accepts_the_zip(archive, tmp_path, build_module) -> None:
    """`blender --command extension validate` (bl_pkg's blender_ext.py, with Blender's tag list)."""
    done = subprocess.run([sys.executable, str(BLENDER_EXT), "validate", str(archive), "--valid-tags",
                           str(VALID_TAGS)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0 and "Success" in done.stdout, done.stdout + done.stderr
    light = build_module.addon(tmp_path / "light", with_wheels=False)  # no wheels: still a valid extension
    with zipfile.ZipFile(light) as opened:
        assert not any(name.startswith("wheels/") for name in opened.namelist())
        assert "wheels" not in tomllib.loads(opened.read("blender_manifest.toml").decode())
    done = subprocess.run([sys.executable, str(BLENDER_EXT), "validate", str(light), "--valid-tags",
                           str(VALID_TAGS)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    broken = tmp_path / "broken.zip"  # the validator does catch a bad manifest
    with zipfile.ZipFile(archive) as source, zipfile.ZipFile(broken, "w") as target:
        text = source.read("blender_manifest.toml").decode()
        text = text.replace('tagline = "', 'tagline = "' + "Much too long. " * 5)
        target.writestr("blender_manifest.toml", text)
        target.writestr("__init__.py", source.read("__init__.py"))
    done = subprocess.run([sys.executable, str(BLENDER_EXT), "validate", str(broken), "--valid-tags",
                           str(VALID_TAGS)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode != 0 and "tagline" in done.stdout + done.stderr


# 'Install from Disk' (extensions.package_install_files) into a fresh user config, then the add-on connects to a
# backend with the pyzmq the zip bundles: a finder makes `zmq` resolvable only from Blender's extension wheels.
INSTALL_DRIVER = """
import importlib.machinery, json, os, sys
import bpy

class OnlyBundledZmq:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name != "zmq":
            return None
        local = [p for p in sys.path if os.sep + ".local" + os.sep in p and p.endswith("site-packages")]
        return importlib.machinery.PathFinder.find_spec(name, local)

sys.meta_path.insert(0, OnlyBundledZmq)
out = {"install": sorted(bpy.ops.extensions.package_install_files(filepath=sys.argv[1], repo="user_default",
                                                                   enable_on_install=True))}
module = sys.modules.get("bl_ext.user_default.keyface")
out["enabled"] = "bl_ext.user_default.keyface" in bpy.context.preferences.addons
out["zmq"] = sys.modules["zmq"].__file__ if "zmq" in sys.modules else None
out["operators"] = [hasattr(bpy.ops.keyface, name) for name in ("connect", "import_gaussians")]
try:
    bpy.ops.keyface.connect(address=sys.argv[2])
except RuntimeError as error:
    out["error"] = str(error)
out.update(connected=bpy.context.scene.keyface.connected, device=bpy.context.scene.keyface.device)
print("RESULT" + json.dumps(out))
"""


def test_install_from_disk_uses_the_bundled_pyzmq(archive, shared_backend, tmp_path) -> None:
    home = {"HOME": tmp_path, "XDG_CONFIG_HOME": tmp_path / ".config", "XDG_CACHE_HOME": tmp_path / ".cache",
            "XDG_DATA_HOME": tmp_path / ".local" / "share"}
    for folder in home.values():
        folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, "-c", INSTALL_DRIVER, str(archive), shared_backend.endpoint],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", **{name: str(value) for name, value in home.items()}})
    line = next((l for l in done.stdout.splitlines() if l.startswith("RESULT")), None)
    assert line, f"driver failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    out = json.loads(line[len("RESULT"):])
    assert out["install"] == ["FINISHED"] and out["enabled"] and out["operators"] == [True, True]
    assert out["zmq"] and str(tmp_path) in out["zmq"] and "/.local/" in out["zmq"]  # extracted from ./wheels
    assert out["connected"] and out["device"] == "cpu", out


def _offline(monkeypatch, tmp_path) -> None:
    """pip can reach no index and no local wheels."""
    empty = tmp_path / "no-wheels"
    empty.mkdir(exist_ok=True)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(empty))


def test_wheel_cache_is_reused_offline_and_verified(installed_addon, monkeypatch, tmp_path, capsys,
                                                    build_module) -> None:
    cache = tmp_path / "cache"
    shutil.copytree(build_module.WHEEL_CACHE, cache)  # filled by the fixture's build
    _offline(monkeypatch, tmp_path)
    wheels = build_module.addon_wheels(cache)
    assert len(wheels) == 10 and all(wheel.parent == cache for wheel in wheels)
    victim = wheels[0]
    victim.write_bytes(victim.read_bytes()[:-1] + b"x")  # a damaged cached wheel is noticed, then re-fetched
    with pytest.raises(SystemExit):
        build_module.addon_wheels(cache)
    assert "could not fetch the pyzmq==27.3.0 wheel" in capsys.readouterr().err


def test_offline_with_an_empty_cache_says_what_to_fetch(monkeypatch, tmp_path, capsys, build_module) -> None:
    _offline(monkeypatch, tmp_path)
    monkeypatch.setattr(build_module, "ADDON_WHEEL_PYTHONS", ("3.13",))  # one request is enough (and fast)
    monkeypatch.setattr(build_module, "ADDON_WHEEL_PLATFORMS", ("win_amd64",))
    with pytest.raises(SystemExit):
        build_module.addon(tmp_path / "dist", cache=tmp_path / "empty-cache")
    error = capsys.readouterr().err
    assert "pyzmq==27.3.0 wheel for CPython 3.13 on win_amd64" in error and "with access to PyPI" in error
    assert "pip download --only-binary=:all: --no-deps --platform win_amd64 --python-version 3.13" in error
    assert not (tmp_path / "dist").exists() or not list((tmp_path / "dist").iterdir())
