"""The papers' recipes around the schedules (issue 20, items 2, 6, 7): per-model presets (Table 14 as the authors'
scripts run it), random erasing before the low-frequency crop, the test-time resize, the size rule below 224.

Every recipe value asserted here names its source: the authors' repository LeapLabTHU/EfficientTrain (file named
next to the value) or, for PVT-v2, whai362/PVT classification/configs/pvt_v2/*.py.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image
from timm.data.random_erasing import RandomErasing
from torchvision import transforms as T

from efficienttrain_ext.config import load_config
from efficienttrain_ext.curriculum import build_schedule
from efficienttrain_ext.curriculum.schedules import efficienttrain_sizes
from efficienttrain_ext.curriculum.sizes import SizeRule
from efficienttrain_ext.data.transforms import WARP_FROM, eval_transform
from efficienttrain_ext.engine.pipeline import BatchPipeline
from efficienttrain_ext.errors import ConfigError
from efficienttrain_ext.ops.lowfreq import lowfreq_crop

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


# ----- item 6: random erasing at the full size, before the crop


def _erasing_pipeline(order: str) -> BatchPipeline:
    return BatchPipeline(MEAN, STD, "cpu", erasing=RandomErasing(1.0, mode="pixel", device="cpu"),
                         erasing_order=order)


def _normalised(x: torch.Tensor) -> torch.Tensor:
    return (x.float() / 255.0 - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def _seed(s: int) -> None:
    random.seed(s)  # timm's RandomErasing draws its boxes from `random`, its noise from torch
    torch.manual_seed(s)


@pytest.mark.parametrize("size", [16, 23])
def test_erasing_runs_at_full_size_before_the_crop(size, gen):
    """EfficientTrain's order: timm's loader transform erases the 224 image (re_prob 0.25, mode pixel) and the crop
    runs on the GPU afterwards (LeapLabTHU/EfficientTrain datasets.py build_transform -> create_transform(re_prob=
    args.reprob); engine.py train_one_epoch -> utils.freq_crop(samples, args.input_size))."""
    x = torch.randint(0, 256, (3, 3, 32, 32), generator=gen, dtype=torch.uint8)
    _seed(3)
    ref = lowfreq_crop(RandomErasing(1.0, mode="pixel", device="cpu")(_normalised(x)), size)
    _seed(3)
    got, _ = _erasing_pipeline("before_crop").train(x, torch.zeros(3, dtype=torch.long), size, 0.0)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    # the old order (EfficientTrain++'s released code, datasets_buffer.py: Lanczos resize, then erasing at B)
    _seed(3)
    old = RandomErasing(1.0, mode="pixel", device="cpu")(_normalised_crop(x, size))
    _seed(3)
    got_old, _ = _erasing_pipeline("after_crop").train(x, torch.zeros(3, dtype=torch.long), size, 0.0)
    torch.testing.assert_close(got_old, old, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(got, got_old, atol=1e-2)


def _normalised_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    y = lowfreq_crop(x.float() / 255.0, size)
    return (y - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def test_erased_noise_is_low_passed_before_crop():
    """Why the order matters: erased full-band noise stays full-band at B when erased after the crop; erased before,
    only its low band survives. On a constant image the crop's output is the erased box's noise alone."""
    x = torch.full((1, 3, 32, 32), 128, dtype=torch.uint8)
    y = torch.zeros(1, dtype=torch.long)
    _seed(0)
    before, _ = _erasing_pipeline("before_crop").train(x, y, 16, 0.0)
    _seed(0)
    after, _ = _erasing_pipeline("after_crop").train(x, y, 16, 0.0)

    def high_band_share(img: torch.Tensor) -> float:  # energy outside the central half of the spectrum
        f = torch.fft.fftshift(torch.fft.fft2(img - img.mean(dim=(-2, -1), keepdim=True)), dim=(-2, -1)).abs() ** 2
        c = img.shape[-1] // 2
        inner = f[..., c - c // 2:c + c // 2, c - c // 2:c + c // 2].sum()
        return float((f.sum() - inner) / f.sum())

    assert high_band_share(before) < high_band_share(after)


def test_erasing_order_default_and_bad_values():
    assert load_config(None).aug.erasing_order == "before_crop"  # EfficientTrain's order (datasets.py, engine.py)
    with pytest.raises(ConfigError, match="aug.erasing_order"):
        load_config(None, ["aug.erasing_order=sideways"])
    with pytest.raises(ValueError, match="erasing_order must be one of"):
        BatchPipeline(MEAN, STD, "cpu", erasing_order="sideways")


# ----- item 7: the test-time resize and the size rule below 224


def _authors_eval(size: int) -> T.Compose:
    """LeapLabTHU/EfficientTrain datasets.py build_transform(is_train=False) as written there (crop_pct None)."""
    if size >= 384:  # "warping (no cropping) when evaluated at 384 or larger"
        t = [T.Resize((size, size), interpolation=T.InterpolationMode.BICUBIC)]
    else:
        crop_pct = 224 / 256
        t = [T.Resize(int(size / crop_pct), interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(size)]
    return T.Compose(t + [T.PILToTensor()])


@pytest.mark.parametrize("size", [384, 448, 224, 192])
def test_eval_transform_is_the_authors(size):
    yy, xx = np.mgrid[0:300, 0:460]  # a non-square image: a warp and a resize-and-crop differ
    img = Image.fromarray(np.stack([xx % 256, yy % 256, (xx + yy) % 256], -1).astype(np.uint8))
    cfg = load_config(None)
    assert cfg.data.crop_pct is None  # the authors' rule by default
    ours = eval_transform(size, cfg.data.crop_pct, cfg.data.interpolation)(img)
    assert ours.shape == (3, size, size)
    assert torch.equal(ours, _authors_eval(size)(img))
    if size >= WARP_FROM:  # 384: the whole image, resized to 384 x 384 (crop 1.0, no aspect ratio kept)
        assert torch.equal(ours, torch.from_numpy(np.array(img.resize((size, size), Image.BICUBIC))).permute(2, 0, 1))
    # an explicit crop_pct is honoured at any size (timm's meaning)
    explicit = eval_transform(size, 1.0)(img)
    assert torch.equal(explicit, T.Compose([T.Resize(size, interpolation=T.InterpolationMode.BICUBIC),
                                            T.CenterCrop(size), T.PILToTensor()])(img))


def test_crop_pct_bad_values():
    for bad in ("0", "1.5", "true"):
        with pytest.raises(ConfigError, match="data.crop_pct"):
            load_config(None, [f"data.crop_pct={bad}"])


def test_efficienttrain_sizes_at_224_384_and_below():
    # 224: B = 160, 192, 224 for 60/20/20% of training (LeapLabTHU/EfficientTrain ET_training.py:
    # b_list = [160,] * 3 + [192,] * 1 + [224,] * 1 over 5 equal stages)
    s = build_schedule("efficienttrain", 300, 224)
    assert [(st.start, st.end, st.size) for st in s.stages] == [(0, 180, 160), (180, 240, 192), (240, 300, 224)]
    # v >= 224: 160, (160 + v) / 2, v (EfficientTrain paper Table 8c; 384 -> 160, 272, 384)
    assert [st.size for st in build_schedule("efficienttrain", 300, 384).stages] == [160, 272, 384]
    # 160 <= v < 224: kept proportional (v * 160/224, v * 192/224, v; docs/training.md "Recipe fidelity" says why):
    # at 192 that is 137.1 -> 138, 164.6 -> 164 (even sizes), not 160/176/192
    assert efficienttrain_sizes(192) == pytest.approx((192 * 160 / 224, 192 * 192 / 224, 192))
    convnet = SizeRule(step=2, min_size=2)  # what a ConvNet such as ResNet-50 probes to
    assert [st.size for st in build_schedule("efficienttrain", 300, 192, convnet).stages] == [138, 164, 192]
    # the reason: the fixed-160 rule below 224 would jump at v = 160 (a run with no size ramp) while the proportional
    # rule meets the paper's rule at 224 and keeps each stage's share of the band
    b1 = [efficienttrain_sizes(v)[0] / v for v in (96, 160, 192, 224)]
    assert b1 == pytest.approx([160 / 224] * 4)
