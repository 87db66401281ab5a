"""Procedural generator of Keyface's built-in head (see `backend/flame/BUILTIN_HEAD.md`).

Pipeline: `sculpt` (signed distance field of the skin) -> `shell` (grid shrink-wrapped onto it, with
mouth slit and eye fissures) -> `parts` (eyeballs, ears, mouth bag) -> `assemble` (one mesh, one
atlas) -> `rig` (weights, joint regressor, pose correctives), `bases` (shape, expression, eyelid
fields from `shape_basis` / `expression_basis`), `landmarks`, `texture` -> `build` (the `.npz` arrays).
"""
