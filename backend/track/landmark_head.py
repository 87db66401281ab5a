"""A FLAME head cut down to the vertices the landmark fit needs, exact and much faster to pose.

Posing all V vertices per frame and iteration is wasted work when only L landmarks (and two pupils) are
compared with the image. `landmark_head(head, extra)` builds a `FlameModel` from the vertices of the landmark
triangles plus `extra` vertices, and five stand-in vertices that carry the joints: their template is
`J_regressor @ v_template` and their blendshapes `J_regressor @ shapedirs`, and the cut model's joint
regressor picks them one-to-one. Joints, and so every skinned vertex and landmark, come out exactly as in the
full model (the joints are linear in the rest-pose vertices). Eyelid blendshapes are dropped: the tracker does
not fit eyelids.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from ..flame import N_JOINTS, FlameData, FlameModel


@dataclasses.dataclass(frozen=True, eq=False)
class LandmarkHead:
    """The cut model and where the chosen landmarks and vertices went.

    Attributes:
        model: a `FlameModel` whose landmarks are the chosen ones, in order.
        extra: [X] row of each requested extra vertex in `model`'s vertices.
    """

    model: FlameModel
    extra: torch.Tensor


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().cpu().double().numpy()


def landmark_head(head: FlameModel, landmarks: np.ndarray, extra: np.ndarray) -> LandmarkHead:
    """Cut `head` down to the landmarks `landmarks` ([L] rows of its landmark list) and `extra` ([X] vertices)."""
    faces = head.faces.cpu().numpy()  # [F, 3]
    landmark_faces = head.landmark_faces.cpu().numpy()[landmarks]  # [L]
    keep = np.unique(np.concatenate([faces[landmark_faces].reshape(-1), extra]))  # [K] original vertex ids
    row_of = {int(v): i for i, v in enumerate(keep)}
    n_keep = keep.shape[0]

    v_template = _numpy(head.v_template)  # [V, 3]
    shapedirs = _numpy(head.shapedirs)  # [V, 3, S + E]
    regressor = _numpy(head.J_regressor)  # [5, V]
    n_vertices = v_template.shape[0]
    posedirs = _numpy(head.posedirs).T.reshape(n_vertices, 3, -1)  # [36, V * 3] -> [V, 3, 36]
    joint_template = regressor @ v_template  # [5, 3]
    joint_dirs = np.einsum("jv,vck->jck", regressor, shapedirs)  # [5, 3, S + E]

    cut_regressor = np.zeros((N_JOINTS, n_keep + N_JOINTS))
    cut_regressor[:, n_keep:] = np.eye(N_JOINTS)
    weights = np.concatenate([_numpy(head.lbs_weights)[keep], np.eye(N_JOINTS)])  # [K + 5, 5]
    cut_faces = np.vectorize(row_of.get, otypes=[np.int64])(faces[landmark_faces])  # [L, 3]
    data = FlameData(
        path=head.source,
        v_template=np.concatenate([v_template[keep], joint_template]),
        faces=cut_faces,
        shapedirs=np.concatenate([shapedirs[keep], joint_dirs]),
        n_shape=head.n_shape,
        posedirs=np.concatenate([posedirs[keep], np.zeros((N_JOINTS, 3, posedirs.shape[2]))]),
        J_regressor=cut_regressor,
        parents=head.parents.cpu().numpy(),
        weights=weights,
        shape_names=head.shape_names,
        expression_names=head.expression_names,
        landmark_faces=np.arange(len(landmarks), dtype=np.int64),
        landmark_barycentric=_numpy(head.landmark_barycentric)[landmarks],
        mediapipe_indices=head.mediapipe_indices.cpu().numpy()[landmarks],
        eyelids=None,
    )
    model = FlameModel(data, dtype=head.v_template.dtype).to(head.v_template.device)
    extra_rows = torch.tensor([row_of[int(v)] for v in extra], dtype=torch.long)
    return LandmarkHead(model=model, extra=extra_rows)


def eyeball_pupils(head: FlameModel) -> dict[int, int] | None:
    """{eye joint (3 left, 4 right): the front-most vertex (largest rest z) bound rigidly to it}, or None.

    FLAME's eyeballs (and the built-in head's) are skinned only to their eye joint, and the face looks along
    +z, so the front-most such vertex is the pupil's centre.
    """
    weights = head.lbs_weights.cpu().numpy()  # [V, 5]
    z = head.v_template[:, 2].cpu().numpy()  # [V]
    pupils = {}
    for joint in (3, 4):
        rigid = np.flatnonzero(weights[:, joint] > 0.999)
        if rigid.size < 4:
            return None
        pupils[joint] = int(rigid[np.argmax(z[rigid])])
    return pupils
