"""Network binds need CurveZMQ keys; with keys, only authorised clients get through."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from backend.service.security import BindRefused, check_bind, create_keys, is_loopback
from shared_client import BackendUnavailable, Client

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("endpoint, loopback", [
    ("tcp://127.0.0.1:5555", True), ("tcp://127.8.9.1:*", True), ("tcp://localhost:1", True),
    ("tcp://[::1]:5555", True), ("ipc:///tmp/keyface.sock", True), ("tcp://0.0.0.0:5555", False),
    ("tcp://*:5555", False), ("tcp://192.168.1.20:5555", False), ("tcp://studio-render-01:5555", False),
    ("tcp://[::]:5555", False), ("tcp://eth0:5555", False),
])
def test_loopback_detection(endpoint, loopback) -> None:
    assert is_loopback(endpoint) is loopback


def test_unparseable_endpoints_are_refused() -> None:
    with pytest.raises(BindRefused, match="cannot parse"):
        check_bind("udp://1.2.3.4", None)


def test_network_bind_without_keys_is_refused_with_a_clear_message(tmp_path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "backend", "serve", "--bind", "tcp://0.0.0.0:*", "--workspace", str(tmp_path)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "refusing to bind tcp://0.0.0.0:*" in result.stderr and "--curve-keys" in result.stderr


def test_incomplete_key_folder_is_refused(tmp_path) -> None:
    with pytest.raises(BindRefused, match="server.key_secret"):
        check_bind("tcp://0.0.0.0:5555", tmp_path)


def test_keyed_backend_accepts_only_authorised_clients(make_backend, tmp_path) -> None:
    keys = tmp_path / "keys"
    created = create_keys(keys)
    stranger = create_keys(tmp_path / "stranger")  # a valid key pair the backend never authorised
    backend = make_backend("--curve-keys", str(keys), bind="tcp://0.0.0.0:*")
    backend.start()
    local = backend.endpoint.replace("0.0.0.0", "127.0.0.1")

    with Client(local, timeout=10, curve_server_key=created["server_public"],
                curve_client_key=created["client_secret"]) as trusted:
        assert trusted.hello().device == "cpu"
        assert trusted.submit("test_pattern", {"count": 2, "width": 32, "height": 32}).wait(timeout=60)["frames"] == 2

    with Client(local, timeout=0.5, retries=1) as plain, pytest.raises(BackendUnavailable):
        plain.hello()
    with Client(local, timeout=0.5, retries=1, curve_server_key=created["server_public"],
                curve_client_key=stranger["client_secret"]) as untrusted, pytest.raises(BackendUnavailable):
        untrusted.hello()
    assert backend.alive()


def test_keys_command_creates_a_usable_key_folder(tmp_path) -> None:
    result = subprocess.run([sys.executable, "-m", "backend", "keys", str(tmp_path / "k")], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    check_bind("tcp://0.0.0.0:5555", tmp_path / "k")
    assert (tmp_path / "k" / "client.key_secret").exists()
