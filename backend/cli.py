"""`python -m backend ...`: serve, keys, demo."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading

from .config_cli import add_config_arguments, config_from_args


def _serve(args: argparse.Namespace) -> int:
    from .atomic import atomic_write_text
    from .service.config import ServerConfig
    from .service.security import BindRefused
    from .service.server import Server

    try:
        config = config_from_args(ServerConfig, args, max_message_bytes=int(args.max_message_mb * 1024 * 1024))
        server = Server(config)
        endpoint = server.start()
    except (BindRefused, ValueError, OSError) as error:
        print(f"keyface backend: {error}", file=sys.stderr)
        return 2
    print(f"keyface backend listening on {endpoint} (device {server.device}, workspace {server.workspace.root})",
          flush=True)
    if config.ready_file is not None:
        atomic_write_text(config.ready_file, json.dumps({"endpoint": endpoint, "pid": os.getpid(),
                                                         "device": server.device}))
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    finally:
        print("keyface backend: stopping", flush=True)
        server.stop()
    return 0


def _keys(args: argparse.Namespace) -> int:
    from .service.security import create_keys

    paths = create_keys(args.folder, args.client)
    print(f"server keys in {args.folder}; start with: python -m backend serve --bind tcp://0.0.0.0:5555 "
          f"--curve-keys {args.folder}")
    print(f"give the artist's machine {paths['server_public']} and {paths['client_secret']}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(args.out)


def build_parser() -> argparse.ArgumentParser:
    from .service.config import ServerConfig

    parser = argparse.ArgumentParser(prog="python -m backend", description="Keyface backend")
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the ZeroMQ service")
    add_config_arguments(serve, ServerConfig, skip=("max_message_bytes",))
    serve.add_argument("--max-message-mb", type=float, default=ServerConfig.max_message_bytes / 2**20,
                       help="largest accepted request in MiB")
    serve.set_defaults(handler=_serve)

    keys = commands.add_parser("keys", help="create CurveZMQ keys for binding a network address")
    keys.add_argument("folder", type=os.path.abspath)
    keys.add_argument("--client", default="client", help="name of the client key pair to create")
    keys.set_defaults(handler=_keys)

    demo = commands.add_parser("demo", help="start a backend, run the default job end to end, stop it")
    demo.add_argument("--out", default="demo_out", help="folder for the demo's outputs")
    demo.set_defaults(handler=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .service.allocator import keep_large_buffers_in_heap

    keep_large_buffers_in_heap()
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    return args.handler(args)
