"""Suite-wide setup (keep bpy/torch/hub caches out of the user's home) and real-backend fixtures."""

from __future__ import annotations

import atexit
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import pytest

# Before anything imports torch, bpy or huggingface: point HOME and the XDG dirs at a throwaway folder
# and forbid hub downloads (tests never fetch weights).
_HOME = Path(tempfile.mkdtemp(prefix="keyface-tests-home-"))
atexit.register(shutil.rmtree, _HOME, ignore_errors=True)
for _name, _sub in (("HOME", ""), ("XDG_CACHE_HOME", ".cache"), ("XDG_CONFIG_HOME", ".config"),
                    ("XDG_DATA_HOME", ".local/share"), ("TORCH_EXTENSIONS_DIR", "torch_extensions")):
    (_HOME / _sub).mkdir(parents=True, exist_ok=True)
    os.environ[_name] = str(_HOME / _sub)
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
# OpenMP threads that spin after each parallel region steal the other core from backend processes and bpy
# subprocesses started by the same test; sleeping waiters keep the 2-core CI machine fair.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO_ROOT = Path(__file__).resolve().parents[1]


def damage_bytes(path: Path, data, mode: str) -> None:
    """Damage a file for a hypothesis fuzz: cut it at a drawn offset ('truncate') or overwrite 1-8 drawn
    bytes ('flip'). `data` is hypothesis' `st.data()` object."""
    from hypothesis import strategies as st

    raw = bytearray(path.read_bytes())
    if mode == "truncate":
        raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
    elif mode == "flip":
        for _ in range(data.draw(st.integers(1, 8))):
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    else:
        raise ValueError(f"unknown damage mode {mode!r}")
    path.write_bytes(bytes(raw))


@pytest.fixture(scope="session")
def damage():
    """`damage(path, data, mode)`: see `damage_bytes`."""
    return damage_bytes


def damage_json_field(path: Path, data, mode: str, holders) -> None:
    """Damage a JSON file for a hypothesis fuzz: in an object drawn from `holders(document)`, replace a drawn
    key's value with an arbitrary JSON value ('json_value': wrong types, NaN, huge numbers, matrices) or
    delete the key ('json_drop')."""
    from hypothesis import strategies as st

    values = st.one_of(st.none(), st.booleans(), st.integers(-10**30, 10**30), st.floats(allow_nan=True),
                       st.text(max_size=5), st.lists(st.floats(), max_size=5), st.just([[0.0] * 4] * 4),
                       st.just([[1.0] * 4] * 3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
    document = json.loads(path.read_text())
    holder = data.draw(st.sampled_from(holders(document)))
    key = data.draw(st.sampled_from(sorted(holder)))
    if mode == "json_drop":
        del holder[key]
    elif mode == "json_value":
        holder[key] = data.draw(values)
    else:
        raise ValueError(f"unknown damage mode {mode!r}")
    path.write_text(json.dumps(document))


@pytest.fixture(scope="session")
def damage_json():
    """`damage_json(path, data, mode, holders)`: see `damage_json_field`."""
    return damage_json_field


class BackendProcess:
    """`python -m backend serve` in a subprocess, with its own workspace and log file."""

    def __init__(self, folder: Path, *args: str, bind: str = "tcp://127.0.0.1:*") -> None:
        self.folder = folder
        self.workspace = folder / "workspace"
        self.args = ["--bind", bind, "--workspace", str(self.workspace), "--device", "cpu", *args]
        self.process: subprocess.Popen | None = None
        self.endpoint = ""
        self.log_path = folder / "backend.log"

    def start(self, timeout: float = 90.0) -> str:
        ready = self.folder / "ready.json"
        ready.unlink(missing_ok=True)
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "backend", "serve", *self.args, "--ready-file", str(ready)],
            cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
        log.close()
        deadline = time.monotonic() + timeout
        while not ready.exists():
            if self.process.poll() is not None:
                raise RuntimeError(f"backend exited with {self.process.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"backend not ready after {timeout} s:\n{self.log()}")
            time.sleep(0.05)
        self.endpoint = json.loads(ready.read_text())["endpoint"]
        return self.endpoint

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(timeout)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture
def backend(tmp_path):
    """A fresh backend for one test."""
    process = BackendProcess(tmp_path)
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def shared_backend(tmp_path_factory):
    """One backend for the tests of a module that leave it in a usable state."""
    process = BackendProcess(tmp_path_factory.mktemp("backend"))
    process.start()
    yield process
    process.stop()


@pytest.fixture
def make_backend(tmp_path):
    """Factory for backends with extra arguments; all are stopped after the test."""
    started: list[BackendProcess] = []

    def make(*args: str, bind: str = "tcp://127.0.0.1:*", folder: Path | None = None) -> BackendProcess:
        target = folder or tmp_path / f"backend{len(started)}"
        target.mkdir(parents=True, exist_ok=True)
        process = BackendProcess(target, *args, bind=bind)
        started.append(process)
        return process

    yield make
    for process in started:
        process.stop()


# --- the Blender extension ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def build_module():
    """build.py imported as a module (it is a script at the repository root, not a package)."""
    spec = importlib.util.spec_from_file_location("keyface_build", REPO_ROOT / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def installed_addon(tmp_path_factory, build_module) -> Path:
    """The folder holding the built zip extracted as package `keyface`, as Blender's 'Install from Disk' lays it out;
    the zip itself is in `<folder>/../dist`."""
    folder = tmp_path_factory.mktemp("addon")
    archive = build_module.addon(folder / "dist")
    with zipfile.ZipFile(archive) as opened:
        opened.extractall(folder / "extensions" / "keyface")
    return folder / "extensions"
