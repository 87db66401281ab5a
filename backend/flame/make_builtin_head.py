"""Generate Keyface's licence-free built-in head: `python -m backend.flame.make_builtin_head [--output PATH]`.

The head is built procedurally and deterministically by `backend.flame.head_builder` and written as a
compressed `.npz` of plain arrays (no pickle) in FLAME's layout; see `BUILTIN_HEAD.md` for what it holds.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np

from .head_builder.build import build_arrays

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "assets" / "keyface_head.npz"


def write_head(path: Path) -> dict[str, np.ndarray]:
    """Build the head and write it to `path` atomically (temp file in the same folder, then rename)."""
    arrays = build_arrays()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".npz", dir=path.parent)
    os.close(fd)
    try:
        np.savez_compressed(tmp, **arrays)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the asset is an ordinary readable file
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return arrays


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="where to write the .npz")
    args = parser.parse_args(argv)
    arrays = write_head(args.output)
    n_shape = int(arrays["n_shape"])
    print(f"wrote {args.output} ({args.output.stat().st_size / 1e6:.2f} MB): "
          f"{arrays['v_template'].shape[0]} vertices, {arrays['f'].shape[0]} faces, {n_shape} shape + "
          f"{arrays['shapedirs'].shape[-1] - n_shape} expression components")


if __name__ == "__main__":
    main()
