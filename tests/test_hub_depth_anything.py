"""Depth Anything backend, end to end on a tiny random checkpoint (no download).

A random Depth Anything predicts almost nothing (values around 1e-8), so the tests that
check orientation and batching overwrite the predicted disparity with a forward hook;
pre-processing, batching, resizing and the conversion still run for real.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vpd.errors import BackendUnavailable, ConfigError
from vpd.tools.backend import ModelStore
from vpd.tools.backends.depth_anything import DepthAnythingEstimator, to_depth

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def depth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    backbone = transformers.Dinov2Config(
        image_size=28,
        patch_size=14,
        hidden_size=16,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=32,
        out_features=["stage1", "stage2", "stage3", "stage4"],
        reshape_hidden_states=False,
    )
    config = transformers.DepthAnythingConfig(
        backbone_config=backbone,
        patch_size=14,
        reassemble_hidden_size=16,
        neck_hidden_sizes=[8, 8, 16, 16],
        fusion_hidden_size=8,
        head_hidden_size=8,
    )
    torch.manual_seed(0)
    model = transformers.DepthAnythingForDepthEstimation(config)
    # Like the real processor (518, keep aspect ratio, multiple of 14), at 28 pixels.
    processor = transformers.DPTImageProcessor(
        size={"height": 28, "width": 28}, keep_aspect_ratio=True, ensure_multiple_of=14, do_pad=False
    )
    path = tmp_path_factory.mktemp("depth_anything")
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def gray(width: int, height: int, value: int) -> Image.Image:
    return Image.new("RGB", (width, height), (value, value, value))


def estimator(path: Path, models: ModelStore | None = None, **options: object) -> DepthAnythingEstimator:
    return DepthAnythingEstimator(str(path), device="cpu", models=models, **options)


def fake_disparity(backend: DepthAnythingEstimator):
    """Disparity growing downwards (the bottom is closer), scaled by the input's brightness."""
    model, _ = backend.load()

    def hook(module, args, kwargs, output):
        pixels = kwargs["pixel_values"]
        batch, h, w = output.predicted_depth.shape
        rows = torch.linspace(0.0, 1.0, h)[:, None].expand(h, w)
        brightness = pixels.mean(dim=(1, 2, 3)) + 2.0  # > 0 for normalised inputs in [-1, 1]
        output.predicted_depth[:] = rows[None] * brightness[:batch, None, None]
        return output

    return model.register_forward_hook(hook, with_kwargs=True)


def test_maps_match_each_image_and_larger_is_farther(depth_dir: Path) -> None:
    backend = estimator(depth_dir)
    images = [gray(40, 20, 10), gray(24, 36, 200), gray(40, 20, 90)]  # two shape groups, interleaved
    handle = fake_disparity(backend)
    try:
        maps = backend.estimate_depth(images)
    finally:
        handle.remove()
    assert len(maps) == 3
    for image, depth in zip(images, maps, strict=True):
        assert depth.dtype == np.float32
        assert depth.shape == (image.height, image.width)
        assert np.isfinite(depth).all()
        rows = depth.mean(axis=1)
        # The bottom (high disparity) is near: depth falls from top to bottom, 0 at the nearest.
        assert rows[0] > rows[-1] and np.all(np.diff(rows) <= 1e-4)
        assert depth.min() == pytest.approx(0.0, abs=1e-4)
    # Brighter inputs got larger disparity ranges: the results are in the callers' order.
    ranges = [float(d.max()) for d in maps]
    assert ranges[1] > ranges[2] > ranges[0]


def test_batch_equals_single_calls(depth_dir: Path) -> None:
    images = [gray(40, 20, 10), gray(24, 36, 200), gray(40, 20, 90)]
    store = ModelStore()  # one loaded model (and hook) for both backends
    batched_backend = estimator(depth_dir, batch_size=4, models=store)
    single_backend = estimator(depth_dir, batch_size=1, models=store)
    handle = fake_disparity(batched_backend)
    try:
        batched = batched_backend.estimate_depth(images)
        singles = [single_backend.estimate_depth([im])[0] for im in images]
    finally:
        handle.remove()
    assert len(store) == 1
    for a, b in zip(batched, singles, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_untouched_random_model_runs(depth_dir: Path) -> None:
    [depth] = estimator(depth_dir).estimate_depth([gray(33, 17, 128).convert("L")])
    assert depth.shape == (17, 33) and depth.dtype == np.float32 and np.isfinite(depth).all()


def test_to_depth_conversion() -> None:
    disparity = np.array([[0.0, 1.0], [2.0, np.nan]], dtype=np.float64)
    depth = to_depth(disparity)
    assert depth.dtype == np.float32
    assert depth.tolist() == [[2.0, 1.0], [0.0, 2.0]]  # NaN treated as the farthest disparity 0
    assert to_depth(np.array([[3.0, -0.1]]), metric=True).tolist() == [[3.0, 0.0]]


def test_missing_model_empty_input_and_options(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    backend = estimator(missing)
    assert backend.estimate_depth([]) == []
    assert len(backend.models) == 0
    assert not DepthAnythingEstimator.check_available(str(missing))
    with pytest.raises(BackendUnavailable, match="no-such-model"):
        backend.estimate_depth([gray(8, 8, 0)])
    with pytest.raises(ConfigError):
        estimator(missing, batch_size="4")


def test_module_import_is_light() -> None:
    code = "import sys, vpd.tools.backends.depth_anything; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.hub
def test_real_checkpoint_puts_the_cat_before_the_background() -> None:
    skimage_data = pytest.importorskip("skimage.data")
    image = Image.fromarray(skimage_data.chelsea())  # 451 x 300: the cat's face fills the centre
    [depth] = DepthAnythingEstimator().estimate_depth([image])
    assert depth.shape == (300, 451)
    face = np.median(depth[150:260, 180:300])  # around the nose
    background = np.median(depth[60:180, 400:451])  # the room behind, right edge
    assert face < background
