"""The `edit` job spec from the Prompts panel's plain values (no bpy; backend/edit/README.md is the contract)."""

LIGHT_PRESETS = ("front", "left", "right", "top", "rim", "warm-sunset", "cool-moonlight", "studio")
"""The relighting editor's named lights (backend.edit.config.LIGHT_PRESETS; a test keeps the two equal)."""


def build_edit_spec(avatar: str, editor: str, prompt: str, track: list[dict], reference: str, light_preset: str,
                    light_intensity: float, iterations: int) -> dict:
    """{avatar, editor, instruction?, prompts?, reference?, light?, schedule}; raises ValueError when the chosen
    editor lacks its input. `track` is already in dataset frames (`prompt_ops.prompt_track`)."""
    spec = {"avatar": avatar or "default", "editor": editor, "schedule": {"iterations": int(iterations)}}
    if prompt.strip():
        spec["instruction"] = prompt.strip()
    if track:
        spec["prompts"] = track
    if reference:
        spec["reference"] = reference
    if editor == "instruct-pix2pix" and "instruction" not in spec and "prompts" not in spec:
        raise ValueError("the instruct-pix2pix editor needs a prompt or a prompt track entry")
    if editor == "reference-style" and "reference" not in spec:
        raise ValueError("the reference-style editor needs a reference image")
    if editor == "relight":
        if light_preset not in LIGHT_PRESETS:
            raise ValueError(f"light preset must be one of {list(LIGHT_PRESETS)}, got {light_preset!r}")
        spec["light"] = {"preset": light_preset, "intensity": float(light_intensity)}
    return spec
