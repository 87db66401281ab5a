"""The Blender half of `python build.py demo`: an animator's session, scripted through the Keyface add-on (and a
worked example of the scripting contract in README.md).

Runs in Python with bpy (Blender as a module) and only the extracted extension importable (backend/demo.py starts
it; the add-on never imports it):

    python -P blender_addon/demo_session.py EXTENSIONS ADDRESS OUT MOTION.npz FRAMES SIZE GAUSSIANS

connect -> build the rig -> key the head motion onto it -> frame the camera -> save OUT/demo.blend ->
render the take with the default avatar (blocking under -b) -> save again. Prints one line
`DEMO {json}` with what it made.
"""

import json
import sys


def main(argv: list[str]) -> int:
    extensions, address, out, motion, frames, size, gaussians = argv
    sys.path.insert(0, extensions)
    import bpy
    import keyface

    keyface.register()
    try:
        scene = bpy.context.scene
        settings = scene.keyface
        bpy.ops.keyface.connect(address=address)
        print(f"blender: connected to {settings.status} on {settings.device}", flush=True)
        bpy.ops.keyface.build_rig()
        rig = keyface.rig_params.find_rig(bpy.context)
        scene.frame_start, scene.frame_end = 1, int(frames)
        scene.render.fps = 24
        bpy.ops.keyface.import_sequence(filepath=motion, source="FILE")
        scene.frame_end = int(frames)
        print(f"blender: built {rig.name} and keyed {frames} frames of talking-head motion", flush=True)
        camera = scene.camera
        camera.location = (0.0, -0.75, 0.02)  # the rig stands FLAME's +y up along Blender's +z, face towards -y
        camera.rotation_euler = (1.5708, 0.0, 0.0)
        camera.data.lens = 85.0
        scene.render.resolution_x = scene.render.resolution_y = int(size)
        scene.render.resolution_percentage = 100
        settings.default_gaussians = int(gaussians)
        settings.quality = "final"
        settings.take = "demo"
        blend = f"{out}/demo.blend"
        bpy.ops.wm.save_as_mainfile(filepath=blend)
        bpy.ops.keyface.render()
        bpy.ops.wm.save_mainfile()
        record = keyface.runtime.BOOK.records()[-1]
        strip = scene.sequence_editor.strips[record.options["strip"]]
        print("DEMO " + json.dumps({"blend": blend, "take": record.options["take_dir"], "strip": strip.name,
                                    "frames": [strip.frame_final_start, strip.frame_final_end - 1],
                                    "job": record.job_id, "spec_frames": int(frames)}), flush=True)
    finally:
        keyface.unregister()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
