"""The table of job kinds this backend runs. A job is a plain function `run(spec, ctx) -> result dict`."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from ..avatar import export_job, render_job
from ..edit import job as edit_job
from ..flame import model_job
from ..reconstruct import job as reconstruct_job
from ..render import maps_job
from ..track import import_job
from . import builtin_jobs, pattern_job

RunFn = Callable[[dict[str, Any], Any], dict[str, Any]]
ValidateFn = Callable[[dict[str, Any]], None]


@dataclasses.dataclass(frozen=True)
class JobKind:
    name: str
    """The `kind` a client submits."""
    run: RunFn
    """Runs on a worker thread; raises JobError/ValueError to fail, returns the result body."""
    summary: str
    """One line for humans (the add-on shows it)."""
    validate: ValidateFn | None = None
    """Cheap spec check run before the job is queued, so a bad spec fails at once; raises ValueError."""


def job_table() -> dict[str, JobKind]:
    """Every job kind, by name."""
    kinds = [
        JobKind("diagnose", builtin_jobs.diagnose, "check the compute device: torch, memory and throughput",
                builtin_jobs.validate_diagnose),
        JobKind("test_pattern", pattern_job.run, "stream a test-card frame sequence (checks the frame "
                "path end to end)", pattern_job.validate),
        JobKind("geometry_maps", maps_job.run, "render a FLAME sequence to depth / normal / shaded guidance maps",
                maps_job.validate),
        JobKind("head_model", model_job.run, "send a head's model data (template, bases, joints, skinning, "
                "correctives) for the Blender rig", model_job.validate),
        JobKind("import_tracked", import_job.run, "read a tracked FLAME dataset (VHAP, GaussianAvatars, "
                "metrical-tracker, INSTA) on the backend's machine", import_job.validate),
        JobKind("render", render_job.run_render, "render an avatar (default, package or 3DGS PLY) posed by a FLAME "
                "sequence to RGBA frames (cached)", render_job.validate_render),
        JobKind("export", export_job.run_export, "write an avatar as a 3DGS PLY, a PLY sequence, a package or its "
                "posed FLAME mesh", export_job.validate_export),
        JobKind("reconstruct", reconstruct_job.run, "optimise a Gaussian avatar from a video, an image folder or a "
                "tracked dataset on the backend's machine (resumable)", reconstruct_job.validate),
        JobKind("edit", edit_job.run, "distil a 2D edit (text, relighting, reference image, painted keyframes) into "
                "a new avatar by iterative dataset update", edit_job.validate),
    ]
    return {kind.name: kind for kind in kinds}
