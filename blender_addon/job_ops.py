"""Operators for the connection and the Jobs panel: connect, disconnect, cancel, retry, clear, wait."""

import bpy

from . import runtime

CONNECT_WAIT_S = 10.0
"""Under `blender -b`, how long connect waits for the backend's first answer."""


class KEYFACE_OT_connect(bpy.types.Operator):
    """Connect to the Keyface backend (the panel shows its status and device; a lost backend is reconnected)"""

    bl_idname = "keyface.connect"
    bl_label = "Connect"

    address: bpy.props.StringProperty(name="Address", default="", description="Overrides the scene setting")

    def execute(self, context):
        settings = context.scene.keyface
        if self.address:
            settings.address = self.address
        try:
            runtime.connect(settings.address)
        except ValueError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        if not bpy.app.background:
            runtime.mirror(context.scene)
            self.report({"INFO"}, f"connecting to {settings.address}")
            return {"FINISHED"}
        status = runtime.wait_for_status(CONNECT_WAIT_S)
        runtime.mirror(context.scene)
        if not status.connected:
            runtime.disconnect()
            runtime.mirror(context.scene)
            settings.status = status.text
            self.report({"ERROR"}, status.text)
            return {"CANCELLED"}
        self.report({"INFO"}, f"Keyface backend on {status.device}")
        return {"FINISHED"}


class KEYFACE_OT_disconnect(bpy.types.Operator):
    """Stop talking to the backend (its jobs keep running; connect again to follow them)"""

    bl_idname = "keyface.disconnect"
    bl_label = "Disconnect"

    def execute(self, context):
        runtime.disconnect()
        runtime.mirror(context.scene)
        return {"FINISHED"}


def _record(operator, key: str):
    record = runtime.BOOK.get(key)
    if record is None:
        operator.report({"ERROR"}, f"no job {key!r} in this Blender session")
    return record


class KEYFACE_OT_job_cancel(bpy.types.Operator):
    """Cancel this job on the backend"""

    bl_idname = "keyface.job_cancel"
    bl_label = "Cancel Job"

    key: bpy.props.StringProperty(name="Job key")

    def execute(self, context):
        record = _record(self, self.key)
        if record is None:
            return {"CANCELLED"}
        runtime.cancel(record)
        return {"FINISHED"}


class KEYFACE_OT_job_retry(bpy.types.Operator):
    """Submit this job again (a render goes to a new take version)"""

    bl_idname = "keyface.job_retry"
    bl_label = "Retry Job"

    key: bpy.props.StringProperty(name="Job key")

    def execute(self, context):
        record = _record(self, self.key)
        if record is None:
            return {"CANCELLED"}
        try:
            fresh = runtime.retry(context.scene, record)
        except (ValueError, OSError) as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        if bpy.app.background:
            runtime.wait(context.scene, [fresh])
            if fresh.state != "done":
                self.report({"ERROR"}, fresh.error_text() or fresh.state)
                return {"CANCELLED"}
        return {"FINISHED"}


class KEYFACE_OT_jobs_clear(bpy.types.Operator):
    """Remove finished jobs from the list"""

    bl_idname = "keyface.jobs_clear"
    bl_label = "Clear Finished"

    def execute(self, context):
        runtime.BOOK.clear_finished(runtime.belongs_here)  # another file's ended jobs still have to land there
        jobs = context.scene.keyface.jobs
        for index in reversed(range(len(jobs))):
            if runtime.BOOK.get(jobs[index].key) is None:
                jobs.remove(index)
        return {"FINISHED"}


class KEYFACE_OT_wait_jobs(bpy.types.Operator):
    """Block until every unfinished job has ended (for scripts and render farms)"""

    bl_idname = "keyface.wait_jobs"
    bl_label = "Wait for Jobs"

    timeout: bpy.props.FloatProperty(name="Timeout", default=0.0, min=0.0, description="Seconds; 0 waits as long "
                                     "as the backend is reachable")

    def execute(self, context):
        records = runtime.BOOK.live()
        runtime.wait(context.scene, records, self.timeout or None)
        failed = [r for r in records if r.state != "done"]
        if failed:
            self.report({"ERROR"}, "; ".join(f"{r.label or r.kind}: {r.error_text() or r.state}" for r in failed))
            return {"CANCELLED"}
        return {"FINISHED"}


CLASSES = (KEYFACE_OT_connect, KEYFACE_OT_disconnect, KEYFACE_OT_job_cancel, KEYFACE_OT_job_retry,
           KEYFACE_OT_jobs_clear, KEYFACE_OT_wait_jobs)
