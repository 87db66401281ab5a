"""The add-on's live state and its main-thread pump.

One `Connection` (its thread owns the socket), one `JobBook`, a `bpy.app.timers` callback that applies
the connection's events on the main thread within a small time budget (so the UI never waits), and a
`load_post` handler that re-attaches the unfinished jobs a loaded .blend lists. Under `blender -b` there
is no UI loop: blocking operators call `wait()`, which applies the same events as they arrive.

Each record belongs to the .blend it was started in (`options["blend"]`, its path; a save-as carries the
records along): only that file's Jobs panel lists it, and its end-of-job behaviour waits until that file is
open, so a render that ends while another .blend is open never puts its strip into the wrong file.

Kinds plug in their own end-of-job behaviour: `ON_END[kind](scene, record)` runs once per record on the
main thread (add the take strip, store the new avatar); `ON_RETRY[kind](scene, record)` prepares a retried
record (a new take folder) and returns its frames folder.
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable

import bpy
from bpy.app.handlers import persistent

from . import takes
from .connection import (
    BackendStatus,
    Connection,
    FrameWritten,
    JobInfo,
    JobRefused,
    JobReply,
    StatusChanged,
    SubmitAccepted,
)
from .jobs import LIVE_STATES, JobBook, JobRecord

BOOK = JobBook()
"""Every job of this Blender session (survives file loads: it lives in Python, not in the .blend)."""
ON_END: dict[str, Callable[[Any, JobRecord], None]] = {}
ON_RETRY: dict[str, Callable[[Any, JobRecord], str | None]] = {}
TICK_BUDGET_S = 0.02
"""Most main-thread time one timer tick spends applying events."""
PRINT_EVERY_S = 2.0
"""Under `blender -b`, at most one progress line per job this often while waiting."""
BACKGROUND_GIVE_UP_S = 60.0
"""Under `blender -b`, a wait fails after the backend has been unreachable this long."""
NOT_CONNECTED = "not connected to a Keyface backend: press Connect (or bpy.ops.keyface.connect(address=...))"

_connection: list[Connection] = []
_open_blend: list[str] = []
"""The path of the .blend open now ('' when unsaved), as of the last load or save."""


def connection() -> Connection | None:
    return _connection[0] if _connection else None


def status() -> BackendStatus:
    current = connection()
    return current.status if current is not None else BackendStatus(False, "not connected")


def connected_address() -> str:
    """The address of the connected backend; ValueError (NOT_CONNECTED, with the status) when there is none."""
    current = connection()
    if current is None or not current.status.connected:
        raise ValueError(f"{NOT_CONNECTED} [{status().text}]")
    return current.address


def belongs_here(record: JobRecord) -> bool:
    """True when `record` was started in the .blend that is open now."""
    return record.options.get("blend", bpy.data.filepath) == bpy.data.filepath


def connect(address: str) -> Connection:
    """(Re)connect to `address`; unfinished jobs of the old connection are followed by the new one."""
    old = connection()
    disconnect()
    new = Connection(address)
    _connection.append(new)
    if old is not None:
        for record in BOOK.live():
            if record.job_id:
                new.attach(record.job_id, record.options.get("take_dir"))
    ensure_timer()
    return new


def disconnect() -> None:
    while _connection:
        _connection.pop().close()


def wait_for_status(timeout: float) -> BackendStatus:
    """Block until the connection thread has tried the backend once (or `timeout`); for `blender -b`."""
    current = connection()
    deadline = time.monotonic() + timeout
    while current is not None and time.monotonic() < deadline:
        if current.status.connected or current.status.text != f"connecting to {current.address}":
            break
        time.sleep(0.02)
    return status()


# --- events -> records (main thread only) -----------------------------------------------------------------


def apply(event: Any) -> None:
    """Apply one connection event to the book."""
    if isinstance(event, StatusChanged):
        return
    if isinstance(event, SubmitAccepted):
        record = BOOK.get(event.key)
        if record is not None:
            record.apply_accepted(event.job_id)
        return
    record = BOOK.get(event.key) if isinstance(event, JobRefused) and event.key else BOOK.by_job_id(event.job_id)
    if record is None:
        return
    if isinstance(event, JobRefused):
        record.apply_request_error(event.code, event.message, event.hint)
    elif isinstance(event, JobReply):
        record.apply_message(event.message)
    elif isinstance(event, JobInfo):
        record.apply_info(event.info)
    elif isinstance(event, FrameWritten):
        record.apply_frame()


def finish_ended(scene) -> None:
    """Run each ended record's ON_END once, while its own .blend is open (errors there become the record's
    error text)."""
    for record in BOOK.records():
        if record.terminal and not record.handled and belongs_here(record):
            record.handled = True
            handler = ON_END.get(record.kind)
            if handler is None:
                continue
            try:
                handler(scene, record)
            except (OSError, ValueError, RuntimeError) as error:
                record.error = f"{record.error + '; ' if record.error else ''}after the job: {error}"


def mirror(scene) -> None:
    """Copy the connection status and every record into `scene.keyface` (what panels draw, what is saved)."""
    settings = scene.keyface
    now = status()
    _set(settings, connected=now.connected, status=now.text, device=now.device, backend_lost=now.warning)
    items = {item.key: item for item in settings.jobs}
    for record in filter(belongs_here, BOOK.records()):
        item = items.get(record.key)
        if item is None:
            item = settings.jobs.add()
            item.key = record.key
        _set(item, job_id=record.job_id, kind=record.kind, label=record.label or record.kind, state=record.state,
             progress=record.fraction, progress_text=record.progress_text(), error=record.error_text(),
             hint=record.hint, options=json.dumps(record.options, sort_keys=True))


def _set(owner, **values: Any) -> None:
    """Assign only what changed (no needless depsgraph updates or undo pushes)."""
    for name, value in values.items():
        if getattr(owner, name) != value:
            setattr(owner, name, value)


def _redraw() -> None:
    manager = bpy.context.window_manager
    for window in manager.windows if manager is not None else ():
        for area in window.screen.areas:
            if area.type in ("VIEW_3D", "SEQUENCE_EDITOR"):
                area.tag_redraw()


def tick() -> float:
    """bpy.app.timers callback: apply what arrived, within TICK_BUDGET_S; never blocks."""
    current = connection()
    scene = bpy.context.scene
    if current is None or scene is None or not hasattr(scene, "keyface"):
        return 0.5
    started, count = time.monotonic(), 0
    while time.monotonic() - started < TICK_BUDGET_S:
        events = current.drain(limit=64)
        if not events:
            break
        for event in events:
            apply(event)
        count += len(events)
    mirror(scene)
    finish_ended(scene)
    if count:
        mirror(scene)
        _redraw()
    return 0.05 if count or BOOK.live() else 0.25


def ensure_timer() -> None:
    if not bpy.app.timers.is_registered(tick):
        bpy.app.timers.register(tick, first_interval=0.05, persistent=True)


def stop_timer() -> None:
    if bpy.app.timers.is_registered(tick):
        bpy.app.timers.unregister(tick)


def wait(scene, records: list[JobRecord], timeout: float | None = None) -> None:
    """Block until every record has ended (for `blender -b`), applying events as they arrive.

    A record still live when the backend has been unreachable for BACKGROUND_GIVE_UP_S, or at `timeout`,
    is marked failed with the reason.
    """
    current = connection()
    deadline = None if timeout is None else time.monotonic() + timeout
    unreachable_since: float | None = None
    last_print, printed = 0.0, {}
    while current is not None and any(not r.terminal for r in records):
        event = current.next_event(0.2)
        for event in ([event] if event is not None else []) + current.drain():
            apply(event)
        now = time.monotonic()
        if now - last_print >= PRINT_EVERY_S:  # a log line for farms and headless scripts, like Blender's "Fra:"
            last_print = now
            for record in records:
                line = f"keyface: {record.label or record.kind}: {record.progress_text()}"
                if printed.get(record.key) != line:
                    printed[record.key] = line
                    print(line, flush=True)
        unreachable_since = None if current.status.connected else (unreachable_since or now)
        reason = ""
        if unreachable_since is not None and now - unreachable_since > BACKGROUND_GIVE_UP_S:
            reason = f"the backend was unreachable for {BACKGROUND_GIVE_UP_S:g} s: {current.status.text}"
        elif deadline is not None and now > deadline:
            reason = f"still running after {timeout:g} s"
        if reason:
            for record in records:
                if not record.terminal:
                    record.apply_request_error("unavailable", reason, "the job may still finish on the backend; "
                                               "its take stays marked INCOMPLETE")
    for record in records:
        if current is None and not record.terminal:
            record.apply_request_error("not_connected", "not connected to a backend", "run bpy.ops.keyface.connect()")
    mirror(scene)
    finish_ended(scene)
    mirror(scene)


def submit(scene, record: JobRecord, frames_dir: str | None = None) -> JobRecord:
    """Add `record` to the book and ask the connection for it (non-blocking)."""
    current = connection()
    record.options.setdefault("blend", bpy.data.filepath)
    BOOK.add(record)
    if current is None:
        record.apply_request_error("not_connected", "not connected to a backend",
                                   "press Connect in the Keyface panel (or bpy.ops.keyface.connect(address=...))")
    else:
        current.submit(record.key, record.kind, record.spec, frames_dir)
    mirror(scene)
    ensure_timer()
    return record


def cancel(record: JobRecord) -> None:
    current = connection()
    if current is not None and record.job_id and not record.terminal:
        current.cancel(record.job_id)


def retry(scene, record: JobRecord) -> JobRecord:
    """Submit `record`'s spec again as a new record (ValueError when the spec did not survive a restart)."""
    if not record.spec:
        raise ValueError(f"the request of {record.label or record.kind} was not kept across the Blender restart; "
                         "start the job again from its panel")
    fresh = record.retry()
    prepare = ON_RETRY.get(fresh.kind)
    frames_dir = prepare(scene, fresh) if prepare is not None else None
    return submit(scene, fresh, frames_dir)


def _saved_spec(options: dict[str, Any]) -> dict[str, Any]:
    """The request a job stored beside its output (takes.save_request), or {} (then it cannot be retried)."""
    try:
        return takes.load_request(options["request"])[1] if options.get("request") else {}
    except (OSError, ValueError):
        return {}


@persistent
def on_load_post(*_args: Any) -> None:
    """After a file load: follow the unfinished jobs the file lists; show this session's jobs."""
    _open_blend[:] = [bpy.data.filepath]
    scene = bpy.context.scene
    if scene is None or not hasattr(scene, "keyface"):
        return
    settings = scene.keyface
    for item in settings.jobs:
        if item.state not in LIVE_STATES or not item.job_id or BOOK.by_job_id(item.job_id) is not None:
            continue
        try:
            options = json.loads(item.options or "{}")
        except ValueError:
            options = {}
        options["blend"] = bpy.data.filepath  # the file's own jobs, wherever the file was moved to
        record = BOOK.add(JobRecord(kind=item.kind, spec=_saved_spec(options), label=item.label, options=options,
                                    key=item.key, job_id=item.job_id, state=item.state))
        current = connection() or connect(settings.address)
        current.attach(record.job_id, options.get("take_dir"))
    mirror(scene)
    ensure_timer()


@persistent
def on_save_post(*_args: Any) -> None:
    """After a save (as): the open file's records move with it to its new path."""
    saved_from = _open_blend[0] if _open_blend else ""
    for record in BOOK.records():
        if record.options.get("blend") == saved_from:
            record.options["blend"] = bpy.data.filepath
    _open_blend[:] = [bpy.data.filepath]


def register() -> None:
    _open_blend[:] = [bpy.data.filepath]
    for handlers, handler in ((bpy.app.handlers.load_post, on_load_post), (bpy.app.handlers.save_post, on_save_post)):
        if handler not in handlers:
            handlers.append(handler)
    ensure_timer()


def unregister() -> None:
    for handlers, handler in ((bpy.app.handlers.load_post, on_load_post), (bpy.app.handlers.save_post, on_save_post)):
        if handler in handlers:
            handlers.remove(handler)
    stop_timer()
    disconnect()
