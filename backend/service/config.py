"""Backend service configuration (one frozen dataclass; the CLI is generated around it)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from shared_proto import DEFAULT_MAX_MESSAGE_BYTES


def default_workspace() -> Path:
    """$KEYFACE_WORKSPACE, else $XDG_DATA_HOME/keyface, else ~/.local/share/keyface."""
    if os.environ.get("KEYFACE_WORKSPACE"):
        return Path(os.environ["KEYFACE_WORKSPACE"]).expanduser()
    data = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return data / "keyface"


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    bind: str = "tcp://127.0.0.1:5555"
    """ZeroMQ endpoint to bind. Port '*' picks a free one. Non-loopback addresses require `curve_keys`."""
    workspace: Path = dataclasses.field(default_factory=default_workspace)
    """Folder holding avatars, takes, job records and checkpoints."""
    curve_keys: Path | None = None
    """Folder with `server.key_secret` and `authorized_clients/*.key` (see `python -m backend keys`)."""
    device: str = "auto"
    """Torch device for jobs: auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps."""
    workers: int = 1
    """Jobs run at once. One GPU runs one job at a time; more only help CPU-bound jobs."""
    max_queue: int = 64
    """Jobs that may wait in the queue before `submit` answers `queue_full`."""
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    """Largest accepted request (header + buffers); larger ones get `too_large`."""
    ready_file: Path | None = None
    """Once listening, write {"endpoint": ..., "pid": ...} here (atomically) for scripts and tests."""
    heartbeat_s: float = 2.0
    """ZeroMQ heartbeat interval; a peer silent for 5 intervals is considered gone."""
    send_timeout_s: float = 120.0
    """How long a job waits for a client that stopped reading before its replies are dropped."""

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.max_queue < 1:
            raise ValueError(f"max_queue must be >= 1, got {self.max_queue}")
        if self.max_message_bytes < 1024:
            raise ValueError(f"max_message_bytes must be >= 1024, got {self.max_message_bytes}")
        if self.heartbeat_s <= 0 or self.send_timeout_s <= 0:
            raise ValueError(f"heartbeat_s and send_timeout_s must be positive, got {self.heartbeat_s}, "
                             f"{self.send_timeout_s}")
