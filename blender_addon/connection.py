"""The add-on's one backend connection (bpy-free: plain functions over the shared client)."""

from __future__ import annotations

import dataclasses

from shared_client import BackendUnavailable, Client, RequestFailed

_client: Client | None = None


@dataclasses.dataclass(frozen=True)
class BackendStatus:
    """What the Connection panel shows."""

    connected: bool
    text: str
    device: str = ""


def connect(address: str, timeout: float = 3.0, retries: int = 1) -> BackendStatus:
    """(Re)connect to `address` and say hello; never raises for an unreachable or refusing backend."""
    global _client
    disconnect()
    client = Client(address, timeout=timeout, retries=retries, name="blender keyface add-on")
    try:
        welcome = client.hello()
    except (BackendUnavailable, RequestFailed) as error:
        client.close()
        return BackendStatus(False, str(error))
    _client = client
    gpu = f" ({welcome.gpu['name']})" if welcome.gpu else ""
    return BackendStatus(True, f"{welcome.server}: {len(welcome.capabilities)} job kinds",
                         f"{welcome.device}{gpu}")


def disconnect() -> None:
    global _client
    if _client is not None:
        _client.close()
        _client = None


def client() -> Client | None:
    """The connected client, or None."""
    return _client
