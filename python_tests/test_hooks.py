"""CurriculumBatch / CurriculumLoader (the curriculum in any loop) against an independent composition: the batch
RandAugment at the schedule's magnitude, the torch.fft definition of the crop, the normalisation."""

from __future__ import annotations

import pytest
import timm
import torch
from timm.data import Mixup
from torch.utils.data import DataLoader, TensorDataset

from efficienttrain_ext.augment import RandAugment, randaugment_hparams
from efficienttrain_ext.curriculum import plan
from efficienttrain_ext.integrations import IMAGENET_MEAN, IMAGENET_STD, CurriculumBatch, CurriculumLoader
from lowfreq_reference import ref_crop

POLICY = "rand-m9-mstd0.5-inc1"
MEAN = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def _images(n=4, size=64, seed=0):
    return torch.randint(0, 256, (n, 3, size, size), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


@pytest.fixture
def schedule():
    return plan("efficienttrain", epochs=10, final_size=64)  # any size: 46 (epochs 1-6), 55 (7-8), 64


def test_batch_is_randaugment_then_crop_then_normalise(schedule):
    x = _images()
    step = CurriculumBatch(schedule)
    out = step(x, epoch=2, step=3, steps=10, generator=torch.Generator().manual_seed(5))
    m = 9 * (2 + 3 / 10) / 10  # m = 9 t / T
    assert step.size == 46 and step.magnitude == pytest.approx(m)

    ra = RandAugment(POLICY, randaugment_hparams(64, IMAGENET_MEAN))
    ra.magnitude = m
    aug = ra(x, torch.Generator().manual_seed(5))
    ref = (ref_crop(aug.double() / 255, (46, 46)) - MEAN.double()) / STD.double()
    assert out.shape == (4, 3, 46, 46) and out.dtype == torch.float32
    torch.testing.assert_close(out.double(), ref, atol=2e-5, rtol=0)


def test_normalised_float_input_gives_the_same_batch(schedule):
    x = _images()
    as_float = (x.float() / 255 - MEAN) / STD  # a ToTensor() + Normalize loader
    a = CurriculumBatch(schedule)(x, epoch=7, generator=torch.Generator().manual_seed(1))
    step = CurriculumBatch(schedule, input_mean=IMAGENET_MEAN, input_std=IMAGENET_STD)
    b = step(as_float, epoch=7, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape[-1] == 55
    # floats in [0, 1] (ToTensor() alone)
    c = CurriculumBatch(schedule)(x.float() / 255, epoch=7, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, c)


def test_eval_and_final_stage_are_not_cropped(schedule):
    x = _images()
    step = CurriculumBatch(schedule, randaugment=None)
    expected = (x.float() / 255 - MEAN) / STD
    torch.testing.assert_close(step.eval(x), expected)
    torch.testing.assert_close(step(x, epoch=9), expected)  # last stage: B = v, no RandAugment


def test_mixup_and_targets(schedule):
    mixup = Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1, num_classes=5)
    step = CurriculumBatch(schedule, mixup=mixup)
    x, y = step(_images(6), torch.arange(6) % 5, epoch=0)
    assert x.shape == (6, 3, 46, 46) and y.shape == (6, 5)
    torch.testing.assert_close(y.sum(1), torch.ones(6))
    with pytest.raises(ValueError, match="pass them"):
        step(_images(6), epoch=0)


def test_bad_input(schedule):
    step = CurriculumBatch(schedule)
    x = _images()
    with pytest.raises(ValueError, match="input_mean/input_std"):
        step((x.float() / 255 - 0.45) / 0.225, epoch=0)  # normalised, but the normalisation was not given
    with pytest.raises(ValueError, match="input_mean/input_std"):
        step(torch.rand(2, 3, 64, 64), epoch=0)  # not on the 1/255 grid: not pixels (already augmented?)
    with pytest.raises(ValueError, match="uint8 or floating point"):
        step(x.int(), epoch=0)
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        step(x[0], epoch=0)
    with pytest.raises(ValueError, match="step must be in"):
        step(x, epoch=0, step=5, steps=4)
    with pytest.raises(ValueError, match="both input_mean and input_std"):
        CurriculumBatch(schedule, input_mean=IMAGENET_MEAN)
    with pytest.raises(TypeError, match="curriculum.plan"):
        CurriculumBatch("efficienttrain")
    with pytest.raises(ValueError, match="channels"):
        CurriculumBatch(schedule, input_mean=(0.5,), input_std=(0.5,))(x.float(), epoch=0)


def test_loader_wraps_every_batch(schedule):
    x, y = _images(12), torch.arange(12)
    extra = torch.arange(12) * 10
    loader = DataLoader(TensorDataset(x, y, extra), batch_size=4)
    step = CurriculumBatch(schedule)
    wrapped = step.wrap(loader, epoch=6)
    assert isinstance(wrapped, CurriculumLoader) and len(wrapped) == 3 and wrapped.dataset is loader.dataset
    mags = []
    for i, (xb, yb, eb) in enumerate(wrapped):
        assert xb.shape == (4, 3, 55, 55) and torch.equal(yb, y[4 * i:4 * i + 4]) and torch.equal(eb, extra[4 * i:4 * i + 4])
        mags.append(step.magnitude)
    assert mags == pytest.approx([9 * (6 + i / 3) / 10 for i in range(3)])
    with pytest.raises(TypeError, match=r"\(images, targets, ...\)"):
        list(step.wrap([x[:4]], epoch=0))


def test_switch_resizes_a_vit_and_leaves_a_dynamic_one(schedule):
    step = CurriculumBatch(plan("efficienttrain", epochs=10, final_size=64,
                                model=timm.create_model("deit_tiny_patch16_224", img_size=64, depth=1, embed_dim=32,
                                                        num_heads=2)))
    vit = timm.create_model("deit_tiny_patch16_224", img_size=64, depth=1, embed_dim=32, num_heads=2)
    opt = torch.optim.AdamW(vit.parameters())
    assert step.switch(vit, 0, opt) == ["pos_embed"] and vit.patch_embed.img_size == (48, 48)
    dyn = timm.create_model("deit_tiny_patch16_224", img_size=64, depth=1, embed_dim=32, num_heads=2,
                            dynamic_img_size=True)
    assert step.switch(dyn, 0) == [] and dyn.patch_embed.img_size == (64, 64)
    with torch.no_grad():
        assert dyn(step(_images(2), epoch=0)).shape == (2, 1000)  # runs at 48 as it is
