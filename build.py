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


# The add-on bundles pyzmq as wheels (Blender 4.2-5.0 run CPython 3.11, 5.1+ 3.13; for 3.13 pyzmq publishes
# cp312-abi3 wheels, which pip picks). One `pip download --platform` request per entry; both macOS requests
# resolve to the same universal2 wheel.
ADDON_WHEEL_PYTHONS = ("3.11", "3.13")
ADDON_WHEEL_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_28_aarch64", "macosx_11_0_arm64",
                         "macosx_10_15_x86_64", "win_amd64", "win_arm64")
# Downloaded wheels, outside the zip and reused by the next build (offline too): index.json maps each request to
# its file and sha256.
WHEEL_CACHE = ROOT / "build" / "wheels-cache"


def pinned(package: str) -> str:
    """The exact pin `package==X.Y.Z` from pyproject.toml's dependencies."""
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    pins = [r.replace(" ", "") for r in project["dependencies"] if r.replace(" ", "").startswith(f"{package}==")]
    if len(pins) != 1:
        fail(f"pyproject.toml must pin {package} exactly once as '{package}==X.Y.Z', found {pins}")
    return pins[0]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def blender_platforms(wheel: str) -> list[str]:
    """Blender platform names (`linux-x64`, `macos-arm64`, ...) that the wheel file `wheel` serves."""
    names = set()
    for tag in wheel[: -len(".whl")].split("-")[-1].split("."):
        system = ("linux" if tag.startswith("manylinux") else "macos" if tag.startswith("macosx_")
                  else "windows" if tag.startswith("win_") else None)
        machine = next((arch for suffix, arch in (("_x86_64", ["x64"]), ("_amd64", ["x64"]), ("_aarch64", ["arm64"]),
                                                  ("_arm64", ["arm64"]), ("_universal2", ["x64", "arm64"]))
                        if tag.endswith(suffix)), None)
        if system is None or machine is None:
            fail(f"wheel {wheel} has platform tag {tag!r}, which maps to no Blender platform")
        names.update(f"{system}-{arch}" for arch in machine)
    return sorted(names)


def fetch_wheel(pin: str, python: str, platform: str, cache: Path, index: dict[str, dict]) -> Path:
    """The wheel of `pin` for CPython `python` on `platform`: from the cache if its sha256 still matches, else
    pip's resolver report (PyPI's sha256 for the file it picks), then `pip download` into the cache, verified."""
    key = f"{pin} python{python} {platform}"
    entry = index.get(key)
    if entry and (cache / entry["file"]).is_file() and sha256_of(cache / entry["file"]) == entry["sha256"]:
        return cache / entry["file"]
    selector = ["--only-binary=:all:", "--no-deps", "--platform", platform, "--python-version", python,
                "--implementation", "cp", "--retries", "1", "--timeout", "30", "--quiet", pin]
    python_exe = str(venv_python() if venv_python().exists() else sys.executable)
    with tempfile.TemporaryDirectory(dir=cache) as scratch:
        report = Path(scratch) / "report.json"
        steps = ([python_exe, "-m", "pip", "install", "--disable-pip-version-check", "--dry-run", "--ignore-installed",
                  "--report", str(report), "--target", str(Path(scratch) / "target"), *selector],
                 [python_exe, "-m", "pip", "download", "--disable-pip-version-check", "--dest", scratch, *selector])
        for number, command in enumerate(steps):
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                why = (done.stderr.strip().splitlines() or ["no output"])[-1]
                fail(f"could not fetch the {pin} wheel for CPython {python} on {platform} ({why}). The add-on zip "
                     f"bundles pyzmq wheels for every platform: run 'python build.py addon' once with access to PyPI "
                     f"(the wheels are then cached in {cache} and later builds work offline), or fetch this one "
                     f"yourself with: pip download --only-binary=:all: --no-deps --platform {platform} "
                     f"--python-version {python} --implementation cp {pin}")
            if number == 0:
                (resolved,) = json.loads(report.read_text(encoding="utf-8"))["install"]
                info = resolved["download_info"]
                name = info["url"].rsplit("/", 1)[-1]
                expected = info.get("archive_info", {}).get("hashes", {}).get("sha256")
                cached = cache / name
                if expected and cached.is_file() and sha256_of(cached) == expected:
                    break  # the same file serves another request (macOS universal2)
        else:
            downloaded = Path(scratch) / name
            if not downloaded.is_file():
                fail(f"pip download did not write {name} (it wrote {sorted(p.name for p in Path(scratch).iterdir())})")
            if expected and sha256_of(downloaded) != expected:
                fail(f"{name}: sha256 {sha256_of(downloaded)} differs from PyPI's {expected}")
            os.replace(downloaded, cached)
    index[key] = {"file": name, "sha256": sha256_of(cached), "pypi_sha256": expected}
    return cached


def addon_wheels(cache: Path = WHEEL_CACHE) -> list[Path]:
    """The pyzmq wheels the add-on bundles, fetched into `cache` (or reused from it), one per distinct file."""
    from concurrent.futures import ThreadPoolExecutor

    cache.mkdir(parents=True, exist_ok=True)
    index_path = cache / "index.json"
    try:
        index = json.loads(index_path.read_text(encoding="utf-8")) if index_path.exists() else {}
    except ValueError:
        index = {}
    pin = pinned("pyzmq")
    requests = [(python, platform) for python in ADDON_WHEEL_PYTHONS for platform in ADDON_WHEEL_PLATFORMS]
    pool = ThreadPoolExecutor(max_workers=6)  # network-bound: pip calls in parallel
    try:
        wheels = list(pool.map(lambda request: fetch_wheel(pin, *request, cache, index), requests))
    finally:
        pool.shutdown(cancel_futures=True)  # the first failure stops the build without waiting for the rest
    temp = index_path.with_suffix(".json.tmp")
    temp.write_text(json.dumps(index, indent=1, sort_keys=True), encoding="utf-8")
    temp.replace(index_path)
    return sorted(set(wheels))


def addon_manifest(source: str, version: str, wheels: list[Path]) -> str:
    """The zip's blender_manifest.toml: `source` with the project version, plus the bundled wheels and the
    platforms they cover (top-level keys, so they go before the first [table])."""
    lines = source.splitlines()
    versions = [i for i, line in enumerate(lines) if line.replace(" ", "").startswith("version=")]
    if len(versions) != 1:
        fail(f"blender_addon/blender_manifest.toml must have one top-level 'version = ...' line, found {len(versions)}")
    lines[versions[0]] = f'version = "{version}"'
    if wheels:
        platforms = sorted({name for wheel in wheels for name in blender_platforms(wheel.name)})
        generated = ["# Generated by 'python build.py addon': the bundled pyzmq wheels and the platforms they cover.",
                     f"platforms = {json.dumps(platforms)}",
                     "wheels = [", *(f'  "./wheels/{wheel.name}",' for wheel in wheels), "]", ""]
        first_table = next((i for i, line in enumerate(lines) if line.lstrip().startswith("[")), len(lines))
        lines = lines[:first_table] + generated + lines[first_table:]
    text = "\n".join(lines) + "\n"
    parsed = tomllib.loads(text)
    assert parsed.get("wheels", []) == [f"./wheels/{wheel.name}" for wheel in wheels] and parsed["version"] == version
    return text


def addon(dist: Path = ROOT / "dist", cache: Path = WHEEL_CACHE, *, with_wheels: bool = True) -> Path:
    """Zip blender_addon/ as a Blender 4.2+ extension: the protocol and client vendored under vendor/, pyzmq wheels
    for Linux/macOS/Windows x CPython 3.11/3.13 under wheels/, the manifest's version from pyproject.toml.
    `with_wheels=False` leaves the wheels out (no network needed): for a Blender whose Python already has pyzmq,
    such as bpy in this project's .venv."""
    version = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["version"]
    source_manifest = ROOT / "blender_addon" / "blender_manifest.toml"
    wheels = addon_wheels(cache) if with_wheels else []
    manifest = addon_manifest(source_manifest.read_text(encoding="utf-8"), version, wheels)
    out = Path(dist) / f"keyface-{version}.zip"
    out.parent.mkdir(parents=True, exist_ok=True)
    sources = [(ROOT / "blender_addon", Path("."))]
    sources += [(ROOT / name, Path("vendor") / name) for name in ("shared_proto", "shared_client")]
    tmp = out.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("blender_manifest.toml", manifest)
        for source, prefix in sources:
            for path in sorted(source.rglob("*")):
                if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc" \
                        and path != source_manifest:
                    archive.write(path, (prefix / path.relative_to(source)).as_posix())
        for wheel in wheels:
            archive.write(wheel, f"wheels/{wheel.name}", compress_type=zipfile.ZIP_STORED)  # already compressed
    tmp.replace(out)
    log(f"wrote {out} ({len(wheels)} pyzmq wheels, {out.stat().st_size / 1e6:.1f} MB)")
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
