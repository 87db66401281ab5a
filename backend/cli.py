"""`python -m backend ...`: serve, keys, demo, render."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from .config_cli import add_config_arguments, config_from_args


def _serve(args: argparse.Namespace) -> int:
    from .atomic import atomic_write_text
    from .service.config import ServerConfig
    from .service.security import BindRefused
    from .service.server import Server

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):  # before start(): a supervisor may signal right away
        signal.signal(signum, lambda *_: stop.set())
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
    try:
        while not stop.wait(0.5):
            if not server.alive():
                print("keyface backend: the I/O thread died (see the log); exiting", file=sys.stderr)
                return 1
    finally:
        print("keyface backend: stopping", flush=True)
        server.stop()
        if config.ready_file is not None:
            config.ready_file.unlink(missing_ok=True)  # do not advertise a dead endpoint
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

    return run_demo(args.out, quick=args.quick)


def _render(args: argparse.Namespace) -> int:
    """Render an avatar to DIR/frame_0000.png... in-process, with the `render` job's code (no server, no cache)."""
    import numpy as np

    from shared_proto import Camera, ProtocolError
    from shared_proto.sequence_io import load_sequence_npz

    from .avatar.render_job import output_size, render_frames, write_png
    from .avatar.sources import parse_avatar, resolve_avatar
    from .service.device import resolve_device

    try:
        device = resolve_device(args.device)
        try:
            data = json.loads(open(args.camera, encoding="utf-8").read())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"cannot read camera file {args.camera}: {error}") from None
        if not isinstance(data, dict) or not {"K", "world_to_camera", "width", "height"} <= set(data):
            raise ValueError(f"{args.camera} must be a JSON object with K (3x3), world_to_camera (4x4), width, height")
        camera = Camera(K=np.asarray(data["K"], dtype=np.float64),
                        world_to_camera=np.asarray(data["world_to_camera"], dtype=np.float64),
                        width=data["width"], height=data["height"],
                        **{k: data[k] for k in ("near", "far") if k in data})
        sequence = None if args.sequence is None else load_sequence_npz(args.sequence)
        asset, gaussians = parse_avatar(args.asset, args.gaussians)
        source = resolve_avatar(asset, None, gaussians)
        if sequence is None and source.kind != "ply":
            raise ValueError(f"--sequence is required to render the animatable avatar {args.asset!r}")
        width, height = output_size(camera, None, None, args.quality)
        cameras = [camera] * (1 if sequence is None else len(sequence))
        out = os.path.abspath(args.out)
        os.makedirs(out, exist_ok=True)
        count = 0
        for t, image, _ in render_frames(source, sequence, cameras, width=width, height=height,
                                         quality=args.quality, device=device):
            write_png(Path(out) / f"frame_{t:04d}.png", image)
            count += 1
    except (ValueError, TypeError, ProtocolError, OSError) as error:
        print(f"keyface render: {error}", file=sys.stderr)
        return 2
    print(f"keyface render: {count} frames ({width}x{height}) in {out}")
    return 0


def _reconstruct(args: argparse.Namespace) -> int:
    """Optimise an avatar in-process (`backend/reconstruct/command.py`)."""
    from .reconstruct.command import run_command
    from .service.device import resolve_device

    return run_command(args, resolve_device)


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

    demo = commands.add_parser("demo", help="start a backend, run the animator's workflow headless through the "
                               "Blender add-on, stop it")
    demo.add_argument("--out", default="demo_out", help="folder for the demo's outputs")
    demo.add_argument("--quick", action="store_true", help="a small take (8 frames at 128x128; for tests)")
    demo.set_defaults(handler=_demo)

    render = commands.add_parser("render", help="render an avatar to PNG frames in-process (no server)")
    render.add_argument("--asset", required=True, help="'default', an avatar package (.safetensors) or a .ply")
    render.add_argument("--camera", required=True, help="CAMERA.json: {K: 3x3, world_to_camera: 4x4, width, height}")
    render.add_argument("--sequence", help="SEQ.npz FLAME sequence (optional for a static .ply: one frame)")
    render.add_argument("--out", required=True, help="folder for frame_0000.png ...")
    render.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps")
    render.add_argument("--quality", default="final", choices=("draft", "final"),
                        help="final: the camera's size; draft: half of it")
    render.add_argument("--gaussians", type=int, default=None, help="Gaussian count of the default avatar")
    render.set_defaults(handler=_render)

    from .reconstruct.command import add_reconstruct_command
    add_reconstruct_command(commands, _reconstruct)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .service.allocator import keep_large_buffers_in_heap

    keep_large_buffers_in_heap()
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    return args.handler(args)
