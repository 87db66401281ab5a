#!/usr/bin/env python3
"""Keyface developer entry point (standard library only: it runs before anything is installed).

    python build.py setup    create .venv (CPython 3.11) and install the pinned dependencies
    python build.py test     setup if needed, then the whole pytest suite (extra args go to pytest)
    python build.py demo     setup if needed, then the default animator job end to end
    python build.py addon    build the installable Blender extension zip into dist/
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path
from typing import NoReturn

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / "keyface-setup.json"
PYPROJECT = ROOT / "pyproject.toml"
REQUIRED_PYTHON = (3, 11)
# Extras installed into the development environment (see pyproject.toml).
DEV_EXTRAS = ("test", "blender")


def log(message: str) -> None:
    print(f"[build] {message}", flush=True)


def fail(message: str) -> NoReturn:
    print(f"[build] error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def python_version_of(command: list[str]) -> tuple[int, int] | None:
    try:
        out = subprocess.run(
            [*command, "-c", "import sys; print(sys.version_info[0], sys.version_info[1])"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return None
    return int(out[0]), int(out[1])


def find_base_python() -> list[str]:
    """A command running CPython 3.11 to build the venv from: this interpreter, else one on PATH."""
    want = ".".join(map(str, REQUIRED_PYTHON))
    if sys.version_info[:2] == REQUIRED_PYTHON:
        return [sys.executable]
    candidates = [[found] for found in [shutil.which(f"python{want}")] if found]
    if os.name == "nt" and shutil.which("py"):
        candidates.append(["py", f"-{want}"])
    for command in candidates:
        if python_version_of(command) == REQUIRED_PYTHON:
            return command
    fail(
        f"Keyface needs CPython {want} (mediapipe 0.10.21's offline face models and bpy 5.0.1 stop at {want}); "
        f"this is {sys.version.split()[0]} and no python{want} is on PATH. Install {want} "
        f"(python.org, 'pyenv install {want}', or your package manager) and run 'python{want} build.py setup'."
    )


def read_requirements() -> tuple[str, list[str]]:
    """(the torch pin, every other pin incl. the dev extras) from pyproject.toml."""
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    requirements = list(project["dependencies"])
    for extra in DEV_EXTRAS:
        requirements += project["optional-dependencies"][extra]
    torch = [r for r in requirements if r.replace(" ", "").startswith("torch==")]
    if len(torch) != 1:
        fail("pyproject.toml must pin torch exactly once as 'torch==X.Y.Z'")
    return torch[0], [r for r in requirements if r not in torch]


def setup_fingerprint(torch_pin: str, others: list[str]) -> str:
    payload = json.dumps({"python": list(REQUIRED_PYTHON), "torch": torch_pin, "others": sorted(others)})
    return hashlib.sha256(payload.encode()).hexdigest()


def pip(*args: str) -> None:
    command = [str(venv_python()), "-m", "pip", "install", "--disable-pip-version-check", *args]
    log(" ".join(command[3:]))
    if subprocess.run(command).returncode != 0:
        fail(f"pip failed: {' '.join(args)}")


def setup() -> Path:
    """Create or refresh .venv; a second run with nothing changed returns in well under a second."""
    torch_pin, others = read_requirements()
    fingerprint = setup_fingerprint(torch_pin, others)
    if venv_python().exists() and STAMP.exists():
        try:
            if json.loads(STAMP.read_text())["fingerprint"] == fingerprint:
                log(f"environment up to date ({VENV})")
                return venv_python()
        except (ValueError, KeyError):
            pass
    if venv_python().exists() and python_version_of([str(venv_python())]) != REQUIRED_PYTHON:
        log(f"{VENV} is not CPython {REQUIRED_PYTHON}; recreating it")
        shutil.rmtree(VENV)
    if not venv_python().exists():
        base = find_base_python()
        log(f"creating {VENV} with {' '.join(base)}")
        if subprocess.run([*base, "-m", "venv", str(VENV)]).returncode != 0:
            fail(f"could not create a virtual environment with {' '.join(base)}")
    # torch first and alone, so nothing else can pull a different (CUDA-sized) build.
    pip(torch_pin)
    pip(*others, torch_pin)
    STAMP.write_text(json.dumps({"fingerprint": fingerprint}))
    log("environment ready")
    return venv_python()


def isolated_env(home: Path) -> dict[str, str]:
    """Environment whose HOME and XDG dirs point at `home`, so bpy/torch caches stay out of the user's."""
    env = dict(os.environ)
    for name, sub in (("HOME", ""), ("XDG_CACHE_HOME", ".cache"), ("XDG_CONFIG_HOME", ".config"),
                      ("XDG_DATA_HOME", ".local/share")):
        path = home / sub
        path.mkdir(parents=True, exist_ok=True)
        env[name] = str(path)
    env["PYTHONPATH"] = str(ROOT)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def test(pytest_args: list[str]) -> int:
    python = setup()
    with tempfile.TemporaryDirectory(prefix="keyface-test-home-") as home:
        command = [str(python), "-m", "pytest", *pytest_args]
        log(" ".join(command[1:]))
        return subprocess.run(command, cwd=ROOT, env=isolated_env(Path(home))).returncode


def demo(demo_args: list[str]) -> int:
    python = setup()
    return subprocess.run([str(python), "-m", "backend", "demo", *demo_args], cwd=ROOT).returncode


def addon(dist: Path = ROOT / "dist") -> Path:
    """Zip blender_addon/ with the protocol and client vendored inside, as a Blender 4.2+ extension."""
    manifest = tomllib.loads((ROOT / "blender_addon" / "blender_manifest.toml").read_text(encoding="utf-8"))
    out = Path(dist) / f"keyface-{manifest['version']}.zip"
    out.parent.mkdir(parents=True, exist_ok=True)
    sources = [(ROOT / "blender_addon", Path("."))]
    sources += [(ROOT / name, Path("vendor") / name) for name in ("shared_proto", "shared_client")]
    tmp = out.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        for source, prefix in sources:
            for path in sorted(source.rglob("*")):
                if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                    archive.write(path, (prefix / path.relative_to(source)).as_posix())
    tmp.replace(out)
    log(f"wrote {out}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("setup", "test", "demo", "addon"))
    args, rest = parser.parse_known_args(argv)
    if args.command == "setup":
        setup()
        return 0
    if args.command == "test":
        return test(rest)
    if args.command == "demo":
        return demo(rest)
    addon()
    return 0


if __name__ == "__main__":
    sys.exit(main())
