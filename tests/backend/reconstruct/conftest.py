"""A tiny synthetic subject (built-in head, own identity, talking motion, mesh-rendered frames) shared by the
reconstruction tests, as tensors and as a VHAP-export folder on disk."""

from __future__ import annotations

import pytest

from backend.flame import BUILTIN_HEAD_PATH

pytestmark = pytest.mark.skipif(not BUILTIN_HEAD_PATH.exists(), reason="built-in head asset not generated")

FRAMES, SIZE = 6, 32


@pytest.fixture(scope="session")
def subject():
    """`SyntheticSubject` of FRAMES frames at SIZE² pixels."""
    from backend.track.synthetic import synthetic_subject

    return synthetic_subject(FRAMES, SIZE, seed=3)


@pytest.fixture(scope="session")
def tracked_folder(subject, tmp_path_factory):
    """The subject written as a VHAP export folder."""
    from backend.track.synthetic import write_tracked_folder

    return write_tracked_folder(subject, tmp_path_factory.mktemp("tracked") / "subject")


@pytest.fixture
def dataset(subject):
    """A fresh `FrameDataset` of the subject (tests may replace its frames)."""
    from backend.reconstruct import FrameDataset

    return FrameDataset.from_tensors(subject.images.clone(), subject.cameras, subject.sequence,
                                     masks=subject.masks.clone(), background=subject.background, composite=False)


@pytest.fixture(autouse=True)
def one_thread():
    """Run these small problems on one intra-op thread (faster than two on a busy 2-core machine)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
