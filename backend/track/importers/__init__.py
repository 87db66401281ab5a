"""Importers for tracked FLAME sequences, each converted to Keyface conventions (`TrackedSequence`).

| format             | what                                                      | module          |
| ------------------ | --------------------------------------------------------- | --------------- |
| `vhap_export`      | VHAP's NeRF-style export / GaussianAvatars data            | `vhap_export`   |
| `vhap_tracked`     | VHAP's `tracked_flame_params*.npz`                        | `vhap_tracked`  |
| `metrical_tracker` | metrical-tracker `checkpoint/*.frame`                     | `metrical`      |
| `insta`            | INSTA's `transforms*.json` + `flame/exp/*.txt`            | `insta`         |

`load_tracked(path)` detects the format. Every importer raises `TrackedImportError` (a `ValueError`)
naming the file and key for malformed data, and `FileNotFoundError` when the path itself is absent.
"""

from .detect import detect_format, load_tracked
from .insta import load_insta
from .metrical import load_metrical_tracker
from .result import TrackedImportError, TrackedSequence
from .vhap_export import load_vhap_export
from .vhap_tracked import load_vhap_tracked

__all__ = [
    "TrackedImportError", "TrackedSequence", "detect_format", "load_insta", "load_metrical_tracker",
    "load_tracked", "load_vhap_export", "load_vhap_tracked",
]
