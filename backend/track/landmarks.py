"""Face landmarks with MediaPipe's face mesh: 468 surface points + 10 iris points per face, in pixels.

MediaPipe 0.10.21 ships the face detector and face-mesh models inside its wheel; the legacy
`mediapipe.solutions.face_mesh.FaceMesh` used here runs offline. Indices follow MediaPipe's canonical face
mesh; with `refine_landmarks=True` points 468-472 are the subject's right iris (centre 468) and 473-477 the
left iris (centre 473). "Left" is the subject's left, as in FLAME (+x).
"""

from __future__ import annotations

import numpy as np

N_POINTS = 478
"""Points per face: 468 mesh points + 2 x 5 iris points."""
RIGHT_IRIS = 468
"""Index of the subject's right iris centre (image left in a frontal, unmirrored view)."""
LEFT_IRIS = 473
"""Index of the subject's left iris centre."""
FACE_OVAL = (10, 21, 54, 58, 67, 93, 103, 109, 127, 132, 136, 148, 149, 150, 152, 162, 172, 176, 234, 251, 284,
             288, 297, 323, 332, 338, 356, 361, 365, 377, 378, 379, 389, 397, 400, 454)
"""Face-mesh points on the face's outline (MediaPipe's FACEMESH_FACE_OVAL): silhouette points whose place on
the head changes with the view, so fits trust them less."""


class FaceLandmarker:
    """MediaPipe's face mesh on RGB frames; one instance per thread, closed with `close()` or `with`.

    Args:
        static_images: treat every frame as unrelated (detector on every frame) rather than tracking.
        min_confidence: MediaPipe's face detection confidence threshold.
    """

    def __init__(self, static_images: bool = True, min_confidence: float = 0.5) -> None:
        from mediapipe.python.solutions.face_mesh import FaceMesh  # heavy import, only when tracking

        if not 0.0 < min_confidence < 1.0:
            raise ValueError(f"min_confidence must be in (0, 1), got {min_confidence!r}")
        self._mesh = FaceMesh(static_image_mode=static_images, max_num_faces=1, refine_landmarks=True,
                              min_detection_confidence=min_confidence)

    def __enter__(self) -> FaceLandmarker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._mesh.close()

    def detect(self, image: np.ndarray) -> np.ndarray | None:
        """[478, 2] landmark positions in pixels of `image` ((0, 0) its top-left corner), or None without a face.

        MediaPipe's face detector sees the frame shrunk to 128 x 128, so a face that fills a tenth of a wide 4K
        frame is too small for it. When the whole frame shows no face, square windows are tried: side
        min(H, W) sliding along the long side, then (on frames of 720 pixels and more) half that side.

        Args:
            image: [H, W, 3] uint8 RGB.
        """
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image must be a [H, W, 3] uint8 array, got "
                             f"{getattr(image, 'dtype', type(image).__name__)} {list(np.shape(image))}")
        for left, top, side in windows(image.shape[0], image.shape[1]):
            points = self._detect_in(image[top:top + side[1], left:left + side[0]])
            if points is not None:
                return points + [left, top]
        return None

    def _detect_in(self, image: np.ndarray) -> np.ndarray | None:
        result = self._mesh.process(np.ascontiguousarray(image))
        if not result.multi_face_landmarks:
            return None
        height, width = image.shape[:2]
        points = np.array([(p.x * width, p.y * height) for p in result.multi_face_landmarks[0].landmark])
        if points.shape != (N_POINTS, 2) or not np.all(np.isfinite(points)):
            return None
        return points  # [478, 2]



def windows(height: int, width: int) -> list[tuple[int, int, tuple[int, int]]]:
    """(left, top, (width, height)) of the regions `FaceLandmarker.detect` searches, in order."""
    found = [(0, 0, (width, height))]
    for side in (min(height, width), min(height, width) // 2):
        if side < 360 or (side == min(height, width) and height == width):
            continue
        stride = side // 2
        xs = sorted({*range(0, width - side + 1, stride), width - side})
        ys = sorted({*range(0, height - side + 1, stride), height - side})
        found += [(x, y, (side, side)) for y in ys for x in xs]
    return found
