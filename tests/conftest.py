"""Suite-wide setup: keep bpy/torch/hub caches out of the user's home, and share fixtures."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Before anything imports torch, bpy or huggingface: point HOME and the XDG dirs at a throwaway folder
# and forbid hub downloads (tests never fetch weights).
_HOME = Path(tempfile.mkdtemp(prefix="keyface-tests-home-"))
for _name, _sub in (("HOME", ""), ("XDG_CACHE_HOME", ".cache"), ("XDG_CONFIG_HOME", ".config"),
                    ("XDG_DATA_HOME", ".local/share"), ("TORCH_EXTENSIONS_DIR", "torch_extensions")):
    (_HOME / _sub).mkdir(parents=True, exist_ok=True)
    os.environ[_name] = str(_HOME / _sub)
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

REPO_ROOT = Path(__file__).resolve().parents[1]
