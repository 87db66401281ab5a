"""The backend's workspace folder: avatars, takes, job records and checkpoints, addressed by id."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from shared_proto import ErrorCode, ProtocolError

from ..atomic import atomic_write_text

FOLDERS = ("avatars", "takes", "jobs")


class Workspace:
    """Paths inside one root folder. Asset names are '/'-separated paths relative to the root."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root).expanduser().resolve()
        for name in FOLDERS:
            (self.root / name).mkdir(parents=True, exist_ok=True)

    def job_dir(self, job_id: str) -> Path:
        """Folder of one job (its record, outputs and checkpoints)."""
        path = self.root / "jobs" / job_id
        path.mkdir(parents=True, exist_ok=True)
        return path

    def asset_name(self, path: str | os.PathLike) -> str:
        """Workspace-relative '/'-separated name of a file inside the workspace (what results report)."""
        resolved = Path(path).resolve()
        if not resolved.is_relative_to(self.root):
            raise ValueError(f"{resolved} is not inside the workspace {self.root}")
        return resolved.relative_to(self.root).as_posix()

    def resolve(self, asset: str) -> Path:
        """An existing file named by `asset`; refuses anything outside the workspace (.., absolute, symlinks out)."""
        if not asset or asset.startswith(("/", "\\")) or "\\" in asset or ".." in asset.split("/") or ":" in asset:
            raise ProtocolError(ErrorCode.NOT_FOUND, f"invalid asset name {asset!r:.200}",
                                "asset names are workspace-relative paths as returned in job results")
        try:
            path = (self.root / asset).resolve()
            found = path.is_relative_to(self.root) and path.is_file()
        except (OSError, ValueError):  # NUL bytes, names too long, unencodable characters
            found = False
        if not found:
            raise ProtocolError(ErrorCode.NOT_FOUND, f"no asset {asset!r:.200} in the workspace",
                                "asset names are workspace-relative paths as returned in job results")
        return path

    def save_record(self, job_id: str, record: dict[str, Any]) -> None:
        atomic_write_text(self.job_dir(job_id) / "job.json", json.dumps(record, indent=1))

    def load_records(self) -> list[dict[str, Any]]:
        """Every readable job record; unreadable ones are skipped (and reported by the caller's log)."""
        records = []
        for path in sorted((self.root / "jobs").glob("*/job.json")):
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if isinstance(record, dict) and isinstance(record.get("job"), str):
                records.append(record)
        return records
