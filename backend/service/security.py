"""Bind policy and CurveZMQ keys.

The backend binds loopback by default. Any other address is reachable from the network, so it requires
CurveZMQ: the server's secret key plus a folder of authorised client public keys; unknown clients are
rejected during the handshake.

Key folder layout (created by `python -m backend keys DIR`):

    DIR/server.key, DIR/server.key_secret          the server's key pair
    DIR/client.key, DIR/client.key_secret          a client key pair to copy to the artist's machine
    DIR/authorized_clients/*.key                   public keys of clients allowed to connect
"""

from __future__ import annotations

import ipaddress
import re
import shutil
from pathlib import Path

_TCP = re.compile(r"tcp://(?P<host>\[[^\]]+\]|[^:/]+):(?P<port>\*|\d{1,5})")


class BindRefused(ValueError):
    """The bind address is not allowed with the given security settings."""


def endpoint_host(endpoint: str) -> str | None:
    """Host part of a tcp:// endpoint (brackets stripped); None for ipc:// and inproc://."""
    if endpoint.startswith(("ipc://", "inproc://")):
        return None
    match = _TCP.fullmatch(endpoint)
    if not match:
        raise BindRefused(f"cannot parse endpoint {endpoint!r}; expected tcp://HOST:PORT (PORT may be '*'), "
                          "e.g. tcp://127.0.0.1:5555")
    return match["host"].strip("[]")


def is_loopback(endpoint: str) -> bool:
    """True when only this machine can connect (loopback tcp, ipc, inproc)."""
    host = endpoint_host(endpoint)
    if host is None:
        return True
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name or interface name: reachable from elsewhere
        return False


def check_bind(endpoint: str, curve_keys: Path | None) -> None:
    """Refuse a network-reachable bind without CurveZMQ keys (and keys that are incomplete)."""
    if curve_keys is not None:
        server_secret_key_path(curve_keys)
        authorized_clients_dir(curve_keys)
        return
    if not is_loopback(endpoint):
        raise BindRefused(
            f"refusing to bind {endpoint} without encryption: that address is reachable from other machines. "
            "Bind tcp://127.0.0.1:PORT, or create keys with 'python -m backend keys KEYDIR' and start with "
            "'--curve-keys KEYDIR' (clients then need KEYDIR/server.key and an authorised client key)."
        )


def server_secret_key_path(keys: Path) -> Path:
    path = Path(keys) / "server.key_secret"
    if not path.is_file():
        raise BindRefused(f"CurveZMQ server secret key {path} is missing; create keys with "
                          f"'python -m backend keys {keys}'")
    return path


def authorized_clients_dir(keys: Path) -> Path:
    path = Path(keys) / "authorized_clients"
    if not path.is_dir() or not any(path.glob("*.key")):
        raise BindRefused(f"{path} has no authorised client public keys (*.key); add the clients' public keys "
                          f"there, or create a pair with 'python -m backend keys {keys}'")
    return path


def create_keys(folder: Path, client_name: str = "client") -> dict[str, Path]:
    """Create a server key pair, one client key pair, and authorise that client. Existing keys are kept."""
    import zmq.auth

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "authorized_clients").mkdir(exist_ok=True)
    if not (folder / "server.key_secret").exists():
        zmq.auth.create_certificates(folder, "server")
    if not (folder / f"{client_name}.key_secret").exists():
        zmq.auth.create_certificates(folder, client_name)
    shutil.copy2(folder / f"{client_name}.key", folder / "authorized_clients" / f"{client_name}.key")
    return {"server_public": folder / "server.key", "client_secret": folder / f"{client_name}.key_secret"}
