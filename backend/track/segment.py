"""Foreground masks (the person) with MediaPipe's selfie segmentation, which runs offline from its wheel."""

from __future__ import annotations

import numpy as np


class Segmenter:
    """MediaPipe's selfie segmentation on RGB crops; closed with `close()` or `with`.

    Args:
        landscape: MediaPipe's landscape model (144 x 256 input) instead of the general one (256 x 256); the
            general model suits the square face crops the tracker makes.
    """

    def __init__(self, landscape: bool = False) -> None:
        from mediapipe.python.solutions.selfie_segmentation import SelfieSegmentation  # heavy import

        self._model = SelfieSegmentation(model_selection=1 if landscape else 0)

    def __enter__(self) -> Segmenter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._model.close()

    def mask(self, image: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
        """[H, W] uint8 foreground probability x 255.

        Args:
            image: [H, W, 3] uint8 RGB.
            valid: [H, W] bool, False where the crop lies outside the source frame (forced to background).
        """
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image must be a [H, W, 3] uint8 array, got "
                             f"{getattr(image, 'dtype', type(image).__name__)} {list(np.shape(image))}")
        probability = self._model.process(np.ascontiguousarray(image)).segmentation_mask  # [H, W] float32
        mask = np.clip(np.nan_to_num(probability) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        if valid is not None:
            mask[~valid] = 0
        return mask
