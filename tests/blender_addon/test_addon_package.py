"""The extension zip installs and talks to a real backend from inside Blender (bpy as a module)."""

from __future__ import annotations

import importlib.util
import json
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


def load_build_module():
    spec = importlib.util.spec_from_file_location("keyface_build", REPO_ROOT / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def installed_addon(tmp_path_factory) -> Path:
    """The built zip extracted as package `keyface`, like 'Install from Disk' does."""
    folder = tmp_path_factory.mktemp("addon")
    archive = load_build_module().addon(folder / "dist")
    with zipfile.ZipFile(archive) as opened:
        names = opened.namelist()
        assert "blender_manifest.toml" in names and "vendor/shared_client/client.py" in names
        assert not any("__pycache__" in name for name in names)
        opened.extractall(folder / "extensions" / "keyface")
    manifest = tomllib.loads((folder / "extensions" / "keyface" / "blender_manifest.toml").read_text())
    assert manifest["id"] == "keyface" and "network" in manifest["permissions"]
    return folder / "extensions"


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
