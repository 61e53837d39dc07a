"""A real livekit-server on 127.0.0.1 with a freshly generated API key and secret."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from testbed.probes import http_ok
from testbed.process import (
    LOOPBACK,
    ManagedProcess,
    free_port,
    free_udp_port,
    wait_until_serving,
)

START_TIMEOUT = 60.0


@dataclass
class LiveKitServer:
    url: str  # ws://127.0.0.1:PORT, what SDKs connect to
    http_url: str  # http://127.0.0.1:PORT, what the server APIs (livekit.api) use
    api_key: str
    api_secret: str
    process: ManagedProcess

    def log_tail(self, lines: int = 30) -> str:
        return self.process.log_tail(lines)


def livekit_config(
    *, api_key: str, api_secret: str, port: int, tcp_port: int, udp_port: int
) -> dict[str, object]:
    """Single-node config that keeps all signalling and media on loopback."""
    return {
        "port": port,
        "bind_addresses": [LOOPBACK],
        # Keys live in the config file, not on the command line, so the secret
        # never shows up in process listings or the logged command.
        "keys": {api_key: api_secret},
        "log_level": "info",
        "rtc": {
            "tcp_port": tcp_port,
            "udp_port": udp_port,
            "node_ip": LOOPBACK,
            "use_external_ip": False,
            # Loopback candidates are off by default; without them ICE has
            # nothing to offer a client on the same machine.
            "enable_loopback_candidate": True,
            "ips": {"includes": [f"{LOOPBACK}/32"]},
        },
        "room": {"auto_create": True, "empty_timeout": 30},
        "turn": {"enabled": False},
    }


def start_livekit_server(bin_dir: Path, directory: Path) -> LiveKitServer:
    directory.mkdir(parents=True, exist_ok=True)
    api_key = f"API{secrets.token_hex(6)}"
    # livekit-server rejects secrets shorter than 32 characters.
    api_secret = secrets.token_urlsafe(32)
    port = free_port()
    config_path = directory / "livekit.yaml"
    config_path.write_text(
        yaml.safe_dump(
            livekit_config(
                api_key=api_key,
                api_secret=api_secret,
                port=port,
                tcp_port=free_port(),
                udp_port=free_udp_port(),
            )
        )
    )
    config_path.chmod(0o600)
    process = ManagedProcess(
        "livekit-server",
        [bin_dir / "livekit-server", f"--config={config_path}"],
        directory / "livekit-server.log",
        env={"HOME": str(directory)},
    )
    http_url = f"http://{LOOPBACK}:{port}"
    try:
        # "/" answers 200 only once the node has published its first stats.
        wait_until_serving(process, lambda: http_ok(f"{http_url}/"), timeout=START_TIMEOUT)
    except BaseException:
        process.stop()
        raise
    return LiveKitServer(f"ws://{LOOPBACK}:{port}", http_url, api_key, api_secret, process)


@contextlib.contextmanager
def running_livekit_server(bin_dir: Path, directory: Path) -> Iterator[LiveKitServer]:
    server = start_livekit_server(bin_dir, directory)
    try:
        yield server
    finally:
        server.process.stop()
