"""Tracking: video -> frames, crops, masks, landmarks and FLAME fits; importers for tracked datasets.

Submodules (import what you need; nothing heavy is imported here):

- `backend.track.importers`: read VHAP / GaussianAvatars, metrical-tracker and INSTA outputs into a
  `TrackedSequence` (FLAME parameters + OpenCV cameras + per-frame file paths).
- `backend.track.mesh_export`: write FLAME meshes (one or a sequence) as OBJ / PLY / GLB.
- `backend.track.pipeline`: monocular tracking, `track(source, out_dir, head, TrackConfig())`: a video or
  image folder -> a VHAP-style tracked folder (see backend/track/README.md).
"""
