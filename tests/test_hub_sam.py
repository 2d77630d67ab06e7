"""SAM segmenter backend, end to end on a tiny random checkpoint (no download).

The tiny model encodes 64 x 64 inputs (images resized to a longest edge of 64, padded to
a square), so the box scaling and the padding removal of the real 1024 x 1024 model are
exercised at a small size. Known mask logits are injected with a forward hook.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vpd.errors import BackendUnavailable, ConfigError, InvalidArgumentError
from vpd.testing.images import noise_image as noise
from vpd.tools.backend import ModelStore
from vpd.tools.backends.sam import SamSegmenter

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def sam_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    vision = {"hidden_size": 16, "output_channels": 16, "num_hidden_layers": 2, "num_attention_heads": 2}
    vision |= {"image_size": 64, "patch_size": 8, "window_size": 4, "global_attn_indexes": [1], "mlp_dim": 32}
    vision |= {"num_pos_feats": 8}
    prompt = {"hidden_size": 16, "image_size": 64, "patch_size": 8, "mask_input_channels": 4}
    decoder = {"hidden_size": 16, "mlp_dim": 32, "num_hidden_layers": 2, "num_attention_heads": 2}
    decoder |= {"iou_head_hidden_dim": 16}
    config = transformers.SamConfig(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)
    torch.manual_seed(0)
    model = transformers.SamModel(config)
    image_processor = transformers.SamImageProcessor(size={"longest_edge": 64}, pad_size={"height": 64, "width": 64})
    path = tmp_path_factory.mktemp("sam")
    model.save_pretrained(path)
    transformers.SamProcessor(image_processor=image_processor).save_pretrained(path)
    return path


def segmenter(path: Path, models: ModelStore | None = None, **options: object) -> SamSegmenter:
    return SamSegmenter(str(path), device="cpu", models=models, **options)


def test_one_mask_per_box_at_the_image_size(sam_dir: Path) -> None:
    images = [noise(40, 20, 1), noise(24, 36, 2), noise(16, 16, 3)]
    boxes = [[(1, 1, 30, 18), (0, 0, 10, 10)], [(2, 3, 20, 30)], []]
    results = segmenter(sam_dir).segment(images, boxes)
    assert [len(masks) for masks in results] == [2, 1, 0]
    for image, masks in zip(images, results, strict=True):
        for mask in masks:
            assert mask.dtype == np.bool_
            assert mask.shape == (image.height, image.width)


def test_batch_equals_single_calls(sam_dir: Path) -> None:
    images = [noise(40, 20, 1), noise(24, 36, 2)]
    boxes = [[(1, 1, 30, 18), (0, 0, 10, 10)], [(2, 3, 20, 30)]]
    batched = segmenter(sam_dir, batch_size=2).segment(images, boxes)
    singles = [segmenter(sam_dir, batch_size=1).segment([im], [b])[0] for im, b in zip(images, boxes, strict=True)]
    for got, want in zip(batched, singles, strict=True):
        for a, b in zip(got, want, strict=True):
            assert (a != b).mean() < 0.01  # identical up to float noise on the threshold


def test_many_boxes_are_decoded_in_chunks(sam_dir: Path) -> None:
    store = ModelStore()
    boxes = [(i, 0, i + 10, 10 + i % 7) for i in range(20)]  # more than one decoder call's worth
    image = noise(40, 20, 4)
    [masks] = segmenter(sam_dir, models=store).segment([image], [boxes])
    assert len(masks) == 20
    for k in (0, 17, 19):
        [[alone]] = segmenter(sam_dir, models=store).segment([image], [[boxes[k]]])
        assert (masks[k] != alone).mean() < 0.01


def test_boxes_reach_the_model_in_the_resized_frame(sam_dir: Path) -> None:
    backend = segmenter(sam_dir)
    model, _ = backend.load()
    seen = []
    handle = model.register_forward_pre_hook(
        lambda m, args, kwargs: seen.append(kwargs["input_boxes"]), with_kwargs=True
    )
    try:
        # 40 x 20 -> resized to 64 x 32: a factor of 1.6 on both axes. The box is clipped first.
        backend.segment([noise(40, 20)], [[(4, 2, 20, 10), (-5, 5, 45, 15)]])
    finally:
        handle.remove()
    [boxes] = seen
    assert boxes.shape == (1, 2, 4)
    assert boxes[0, 0].tolist() == pytest.approx([6.4, 3.2, 32.0, 16.0], abs=1e-4)
    assert boxes[0, 1].tolist() == pytest.approx([0.0, 8.0, 64.0, 24.0], abs=1e-4)


def test_masks_drop_the_padding_before_resizing(sam_dir: Path) -> None:
    backend = segmenter(sam_dir)
    model, _ = backend.load()

    def hook(module, args, kwargs, output):
        # The low-res mask covers the padded 64 x 64 square; a 40 x 20 image fills its top
        # half. Mark the top quarter of the square, i.e. the top half of the image.
        low = output.pred_masks
        low[:] = -10.0
        low[..., : low.shape[-2] // 4, :] = 10.0
        return output

    handle = model.register_forward_hook(hook, with_kwargs=True)
    try:
        [[mask]] = backend.segment([noise(40, 20)], [[(0, 0, 40, 20)]])
    finally:
        handle.remove()
    assert mask.shape == (20, 40)
    assert mask[:9].all() and not mask[11:].any()


def test_boxes_without_area_get_empty_masks_without_the_model(tmp_path: Path) -> None:
    backend = segmenter(tmp_path / "no-such-model")
    [[mask]] = backend.segment([noise(40, 20)], [[(50, 0, 60, 10)]])  # entirely right of the image
    assert mask.shape == (20, 40) and not mask.any()
    assert backend.segment([], []) == []
    assert len(backend.models) == 0


@pytest.mark.parametrize("box", [(10, 0, 5, 10), (0, 0, float("nan"), 4), (0, 0, 4), ("a", 0, 1, 1), None])
def test_bad_boxes_are_rejected_before_loading(tmp_path: Path, box: object) -> None:
    with pytest.raises(InvalidArgumentError):
        segmenter(tmp_path / "no-such-model").segment([noise(20, 20)], [[box]])


def test_missing_model_and_bad_options(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    assert not SamSegmenter.check_available(str(missing))
    with pytest.raises(BackendUnavailable, match="no-such-model"):
        segmenter(missing).segment([noise(20, 20)], [[(0, 0, 10, 10)]])
    with pytest.raises(InvalidArgumentError):
        segmenter(missing).segment([noise(20, 20)], [])
    with pytest.raises(ConfigError):
        segmenter(missing, batch_size=0)


def test_module_import_is_light() -> None:
    code = "import sys, vpd.tools.backends.sam; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.hub
def test_real_checkpoint_segments_the_cup() -> None:
    skimage_data = pytest.importorskip("skimage.data")
    image = Image.fromarray(skimage_data.coffee())  # 600 x 400, the cup spans about x 170-410, y 15-310
    box = (170, 15, 410, 310)
    [[mask]] = SamSegmenter().segment([image], [[box]])
    inside = mask[15:310, 170:410].mean()
    outside = (mask.sum() - mask[15:310, 170:410].sum()) / (mask.size - 295 * 240)
    assert 0.3 < inside < 0.98 and outside < 0.05
