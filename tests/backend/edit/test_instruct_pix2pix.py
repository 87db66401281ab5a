"""The InstructPix2Pix editor with a tiny random-weight pipeline of the real architecture, saved and loaded from a
temporary folder (never downloaded)."""

from __future__ import annotations

import pytest
import torch

from backend.edit import DiffusionSettings, EditContext, EditModels, EditorSettings, make_editor
from backend.edit.diffusion import diffusion_size
from backend.edit.instruct_pix2pix import InstructPix2PixEditor, load_pipeline
from backend.errors import ModelMissingError

@pytest.fixture(scope="module")
def model_folder(tmp_path_factory, tiny_pipeline):
    folder = tmp_path_factory.mktemp("models") / "instruct-pix2pix"
    tiny_pipeline(folder, "instruct-pix2pix")
    return folder


def test_loads_the_saved_folder_with_its_real_tokenizer(model_folder, tiny_vocabulary) -> None:
    pipeline = load_pipeline(str(model_folder), "cpu")
    assert len(pipeline.tokenizer) == tiny_vocabulary  # offline loading did not fall back to a stub tokenizer
    assert pipeline.unet.config.in_channels == 8


def test_edits_two_steps_deterministically_per_seed(model_folder) -> None:
    models = EditModels.from_environment({}, instruct_pix2pix_model=model_folder)
    settings = EditorSettings(diffusion=DiffusionSettings(steps=2, resolution=32))
    editor = make_editor("instruct-pix2pix", settings, models, "cpu")
    assert isinstance(editor, InstructPix2PixEditor) and editor.iterative
    generator = torch.Generator().manual_seed(0)
    image, source = torch.rand(40, 40, 3, generator=generator), torch.rand(40, 40, 3, generator=generator)
    mask = torch.ones(40, 40)
    first = editor.edit(image, source, "make him smile", mask, context=EditContext(noise=1.0, seed=3))
    again = editor.edit(image, source, "make him smile", mask, context=EditContext(noise=1.0, seed=3))
    other = editor.edit(image, source, "make him smile", mask, context=EditContext(noise=1.0, seed=4))
    assert first.shape == (40, 40, 3) and first.dtype == image.dtype
    assert 0 <= float(first.min()) and float(first.max()) <= 1
    torch.testing.assert_close(first, again, rtol=0, atol=0)
    assert not torch.equal(first, other)
    halfway = editor.edit(image, source, "make him smile", mask, context=EditContext(noise=0.5, seed=3))
    assert halfway.shape == (40, 40, 3) and not torch.equal(first, halfway)  # starts mid-schedule from the render
    with pytest.raises(ValueError, match="instruction"):
        editor.edit(image, source, " ", mask)


def test_missing_weights_name_the_model_and_the_folder(tmp_path) -> None:
    with pytest.raises(ModelMissingError) as caught:
        make_editor("instruct-pix2pix", EditorSettings(), EditModels.from_environment({}), "cpu")
    assert "InstructPix2Pix" in str(caught.value) and "KEYFACE_MODELS" in str(caught.value)
    assert "instruct-pix2pix" in caught.value.hint
    (tmp_path / "instruct-pix2pix").mkdir()
    models = EditModels.from_environment({"KEYFACE_MODELS": str(tmp_path)})
    with pytest.raises(ModelMissingError) as caught:
        make_editor("instruct-pix2pix", EditorSettings(), models, "cpu")
    assert str(tmp_path / "instruct-pix2pix" / "model_index.json") in str(caught.value)


def test_a_broken_folder_is_a_model_missing_error(tmp_path) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "model_index.json").write_text('{"_class_name": "StableDiffusionInstructPix2PixPipeline"}')
    with pytest.raises(ModelMissingError, match="InstructPix2Pix"):
        make_editor("instruct-pix2pix", EditorSettings(), EditModels(instruct_pix2pix_model=folder), "cpu")


def test_diffusion_size_keeps_aspect_in_multiples_of_8() -> None:
    assert diffusion_size(512, 512, 512) == (512, 512)
    assert diffusion_size(720, 1280, 512) == (288, 512)
    assert diffusion_size(100, 50, 64) == (64, 32)


def test_the_loop_runs_iterative_dataset_update_with_the_pipeline(model_folder) -> None:
    from backend.avatar import AvatarConfig, GaussianAvatar, NeuralRendererConfig
    from backend.edit import EditSchedule
    from backend.edit.loop import EditLoop
    from backend.reconstruct.dataset import FrameDataset
    from backend.track.synthetic import synthetic_subject

    subject = synthetic_subject(3, 32, seed=1)
    dataset = FrameDataset.from_tensors(subject.images, subject.cameras, subject.sequence, masks=subject.masks,
                                        background=subject.background, composite=False)
    avatar = GaussianAvatar.from_surface(subject.head, AvatarConfig(appearance="neural", num_gaussians=500,
                                                                    feature_dim=4,
                                                                    renderer=NeuralRendererConfig(channels=4,
                                                                                                  layers=1)),
                                         shape=torch.tensor(subject.sequence.shape, dtype=torch.float32))
    editor = make_editor("instruct-pix2pix", EditorSettings(diffusion=DiffusionSettings(steps=2, resolution=32)),
                         EditModels(instruct_pix2pix_model=model_folder), "cpu")
    schedule = EditSchedule(iterations=3, edit_every=1, face_size=32, expression_tolerance=None, max_frames=2)
    loop = EditLoop(avatar, dataset, editor, ["make him smile", None, "make him smile"], schedule)
    loop.run()
    assert loop.rows[:2] == [0, 2] and loop.edits == 2 + 2  # initial pass + re-edits before steps 2 and 3
    assert not torch.equal(loop.work.images[0], dataset.images[0])
