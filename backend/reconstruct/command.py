"""`python -m backend reconstruct`: the `reconstruct` job's core in-process, with a tqdm progress bar.

    python -m backend reconstruct (--video PATH | --frames DIR | --tracked DIR) --out DIR [--head builtin|PATH]
        [--resolution 512] [--iterations N] [--max-frames K] [--device cpu|cuda|mps] [--seed S] [--appearance sh]
        [--holdout-fit 30]

`--out DIR` receives avatar.safetensors, tracked/ (video / frames), checkpoints/ and report.json; running the same
command again resumes from the newest checkpoint (Ctrl-C writes one). The last line on stdout is the result as
JSON; user errors print one line to stderr and exit with code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable


def add_reconstruct_command(commands: Any, handler: Callable[[argparse.Namespace], int]) -> None:
    """Register the subcommand on `build_parser`'s subparsers, run by `handler` (imports nothing heavy)."""
    parser = commands.add_parser("reconstruct", help="optimise a Gaussian avatar from a video, frames or tracking")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--video", help="a video file of one face")
    source.add_argument("--frames", help="a folder of images of one face")
    source.add_argument("--tracked", help="a tracked dataset (VHAP / GaussianAvatars export, VHAP npz, "
                                          "metrical-tracker, INSTA)")
    parser.add_argument("--out", required=True, help="output folder (avatar, tracking, checkpoints, report)")
    parser.add_argument("--head", default="builtin", help="'builtin' or the FLAME file the avatar is rigged to")
    parser.add_argument("--resolution", type=int, default=512, help="longer side of the training images")
    parser.add_argument("--iterations", type=int, default=3000, help="optimisation steps")
    parser.add_argument("--max-frames", type=int, default=300, help="at most this many (evenly spaced) frames")
    parser.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps")
    parser.add_argument("--seed", type=int, default=0, help="seed: equal seeds give equal avatars")
    parser.add_argument("--appearance", default="sh", choices=("sh", "neural"),
                        help="sh (3DGS colours) or neural (PortraitGen's Neural Gaussian Texture)")
    parser.add_argument("--holdout-fit", type=int, default=None,
                        help="Adam steps fitting the held-out frames' expression and pose, avatar frozen, before "
                             "evaluation (default: the job's, 30; 0: evaluate with the tracked ones)")
    parser.set_defaults(handler=handler)


def run_command(args: argparse.Namespace, resolve_device: Callable[[str], str]) -> int:
    """Run the reconstruction on `resolve_device(args.device)`; prints the result JSON line. Exit code 0, 2 for
    user errors, 130 on Ctrl-C."""
    from tqdm import tqdm

    from shared_proto import ProtocolError

    from ..errors import JobError
    from .job import parse_request, reconstruct

    spec = {name: getattr(args, name) for name in ("video", "frames", "tracked") if getattr(args, name) is not None}
    spec.update(head=args.head, resolution=args.resolution, iterations=args.iterations, max_frames=args.max_frames,
                seed=args.seed, appearance=args.appearance)
    if args.holdout_fit is not None:
        spec["holdout_fit"] = args.holdout_fit
    bars: dict[str, tqdm] = {}

    def progress(stage: str, step: int = 0, total: int = 0, message: str = "", preview: Any = None) -> None:
        bar = bars.get(stage)
        if bar is None:
            for other in bars.values():
                other.close()
            bar = bars[stage] = tqdm(total=total or None, desc=stage, file=sys.stderr, dynamic_ncols=True)
        if total and bar.total != total:
            bar.total = total
        bar.n = step
        bar.set_postfix_str(message[:60], refresh=False)
        bar.refresh()

    out = Path(args.out).expanduser().absolute()
    try:
        request = parse_request(spec)
        device = resolve_device(args.device)
        result = reconstruct(request, out, out / "avatar.safetensors", device=device, progress=progress)
    except KeyboardInterrupt:
        print("keyface reconstruct: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except JobError as error:
        print(f"keyface reconstruct: {error.message}" + (f" ({error.hint})" if error.hint else ""), file=sys.stderr)
        return 2
    except (ValueError, TypeError, ProtocolError, OSError) as error:
        print(f"keyface reconstruct: {error}", file=sys.stderr)
        return 2
    finally:
        for bar in bars.values():
            bar.close()
    print(json.dumps(result), flush=True)
    return 0
