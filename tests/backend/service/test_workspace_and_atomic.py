"""Atomic writes and workspace path safety."""

from __future__ import annotations

import os

import pytest

from backend.atomic import atomic_path, atomic_write_text
from backend.service.registry import JobRegistry, JobState
from backend.service.workspace import Workspace
from shared_proto import ErrorCode, ProtocolError


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path) -> None:
    target = tmp_path / "out.json"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as temp:
            temp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.json"]


def test_atomic_folders_replace_whole(tmp_path) -> None:
    target = tmp_path / "avatar"
    for version in ("1", "2"):
        with atomic_path(target) as temp:
            temp.mkdir()
            (temp / "v").write_text(version)
    assert (target / "v").read_text() == "2"
    assert sorted(os.listdir(tmp_path)) == ["avatar"]


def test_writing_nothing_is_an_error(tmp_path) -> None:
    with pytest.raises(FileNotFoundError):
        with atomic_path(tmp_path / "x"):
            pass


def test_workspace_resolves_only_files_inside(tmp_path) -> None:
    workspace = Workspace(tmp_path / "ws")
    inside = workspace.job_dir("j1") / "a.txt"
    inside.write_text("x")
    assert workspace.resolve(workspace.asset_name(inside)) == inside
    outside = tmp_path / "secret.txt"
    outside.write_text("s")
    (workspace.root / "jobs" / "link.txt").symlink_to(outside)
    for name in ("jobs/link.txt", "../secret.txt", str(outside), "jobs", ""):
        with pytest.raises(ProtocolError) as info:
            workspace.resolve(name)
        assert info.value.code is ErrorCode.NOT_FOUND
    with pytest.raises(ValueError):
        workspace.asset_name(outside)


def test_registry_marks_unfinished_jobs_interrupted_on_reload(tmp_path) -> None:
    workspace = Workspace(tmp_path)
    registry = JobRegistry(workspace)
    running = registry.create("test_pattern", "r1", {}, b"peer")
    registry.update(running, state=JobState.RUNNING, persist=True)
    done = registry.create("diagnose", "r2", {}, b"peer")
    registry.update(done, state=JobState.DONE, result={"x": 1}, persist=True)
    (workspace.job_dir("broken") / "job.json").write_text("{not json")

    reloaded = JobRegistry(workspace)
    assert reloaded.get(running.job).state is JobState.INTERRUPTED
    assert reloaded.get(running.job).error["code"] == "interrupted"
    assert reloaded.get(done.job).result == {"x": 1}
    assert reloaded.by_request("r2").job == done.job


def test_a_leftover_backup_does_not_block_folder_replacement(tmp_path) -> None:
    target = tmp_path / "avatar"
    (tmp_path / f".avatar.old-{os.getpid()}").mkdir()  # a crashed run's leftover, non-empty
    (tmp_path / f".avatar.old-{os.getpid()}" / "x").write_text("stale")
    for version in ("1", "2"):
        with atomic_path(target) as temp:
            temp.mkdir()
            (temp / "v").write_text(version)
    assert (target / "v").read_text() == "2"


@pytest.mark.parametrize("name", ["a" * 5000, "x\x00y", "\ud800", "jobs/" + "b" * 300 + "/c"])
def test_unresolvable_names_are_not_found(tmp_path, name) -> None:
    with pytest.raises(ProtocolError) as info:
        Workspace(tmp_path).resolve(name)
    assert info.value.code is ErrorCode.NOT_FOUND
