"""data.loader=dali against the torch loader (the reference) on DALI's CPU backend: shapes, dtype, range, labels,
RandomResizedCrop scale/ratio statistics and flip rate, DDP shards, corrupt images, resume, and a training run."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.stats import ks_2samp

from efficienttrain_ext.config import ConfigError, load_config
from efficienttrain_ext.data import DataError, FashionMNIST, build_datasets, write_shards
from efficienttrain_ext.data.dali_pipeline import DaliEpochLoader, dali_available, decode_device
from efficienttrain_ext.data.encoded import looks_complete, readable
from efficienttrain_ext.engine.distributed import DistInfo
from efficienttrain_ext.engine.loaders import LOADERS, TorchEpochLoader
from efficienttrain_ext.engine.stage_plan import steps_per_epoch

from _etrain_helpers import FMNIST, REPO, make_photo_folder, metrics, run_etrain, run_torchrun, tiny_args
from conftest import requires_cuda

pytestmark = pytest.mark.skipif(not dali_available(), reason="NVIDIA DALI is not installed "
                                "(pip install nvidia-dali-cuda130, or pip install -e .[data])")

GRID = 16  # solid-colour identity images: channel levels 8, 24, ..., 248


def _ids(x: torch.Tensor) -> list[int]:
    """The identity of solid-colour images (robust to JPEG rounding): the mean colour snapped to the grid."""
    levels = ((x.float().mean(dim=(2, 3)) - 8) / GRID).round().long().clamp(0, GRID - 1)
    return (levels[:, 0] * GRID * GRID + levels[:, 1] * GRID + levels[:, 2]).tolist()


def _id_folder(root, n=43, classes=3):
    for i in range(n):
        r, g, b = (i // (GRID * GRID)) % GRID, (i // GRID) % GRID, i % GRID
        d = os.path.join(root, "train", f"c{i % classes}")
        os.makedirs(d, exist_ok=True)
        Image.new("RGB", (48 + i % 5, 40), (8 + GRID * r, 8 + GRID * g, 8 + GRID * b)).save(
            os.path.join(d, f"{i:03d}.jpg"), quality=95)
    return str(root)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return str(make_photo_folder(tmp_path_factory.mktemp("photos"), per_class=8, val_per_class=2))


@pytest.fixture(scope="module")
def ids(tmp_path_factory):
    return _id_folder(tmp_path_factory.mktemp("ids"))


def _train(root, size=32, **kw):
    return build_datasets("imagefolder", root, size, val_split=None if os.path.isdir(os.path.join(root, "val"))
                          else 0.2, **kw).train


def _epoch(loader, epoch):
    loader.set_epoch(epoch)
    return list(loader)


def test_same_shapes_dtype_range_and_labels_as_torch(photos):
    train = _train(photos)
    for info in (DistInfo(0, 2), DistInfo(1, 2)):
        dali = DaliEpochLoader(train, 4, info, workers=2, seed=5, pin_memory=False)
        ref = TorchEpochLoader(train, 4, info, workers=0, seed=5, pin_memory=False)
        assert len(dali) == len(ref) == steps_per_epoch(len(train), 4, 2) == 3
        a, b = _epoch(dali, 2), _epoch(ref, 2)
        assert len(a) == len(b) == 3
        for (x, y, bad), (xr, yr, badr) in zip(a, b):
            assert x.shape == xr.shape == (4, 3, 32, 32) and x.dtype == xr.dtype == torch.uint8
            assert x.device.type == "cpu" and y.dtype == torch.int64 and bad == badr == []
            assert torch.equal(y, yr)  # under DDP both follow the DistributedSampler: same samples, same order
        for batches in (a, b):  # the photos' full range, not rescaled
            xs = torch.cat([x for x, _, _ in batches])
            assert xs.min() < 20 and xs.max() > 235
    # one process: every label of the epoch but the dropped partial batch
    dali = DaliEpochLoader(train, 5, DistInfo(), workers=1, seed=0, pin_memory=False)
    labels = torch.cat([y for _, y, _ in _epoch(dali, 0)])
    full = np.bincount(np.asarray(train.targets), minlength=3)
    assert len(labels) == 20 and (np.bincount(labels.numpy(), minlength=3) <= full).all()


def _coordinate_folder(root):
    # R = x, G = y: a crop's window can be read back from the output's first/last columns and rows
    yy, xx = np.mgrid[:192, :256]
    img = np.stack([xx, yy, np.full_like(xx, 128)], -1).astype(np.uint8)
    for split, n in (("train", 64), ("val", 1)):
        d = os.path.join(root, split, "only")
        os.makedirs(d, exist_ok=True)
        for i in range(n):
            Image.fromarray(img).save(os.path.join(d, f"{i}.png"))
    return str(root)


def _windows(batches, size):
    x = torch.cat([b[0] for b in batches]).float()
    left, right = x[:, 0, :, 0].mean(1), x[:, 0, :, -1].mean(1)
    top, bottom = x[:, 1, 0, :].mean(1), x[:, 1, -1, :].mean(1)
    w = (left - right).abs() * size / (size - 1)  # column centres sit half a step inside the window
    h = (bottom - top) * size / (size - 1)
    return (w * h / (256 * 192)).numpy(), torch.log(w / h).numpy(), (left > right).float().numpy()


@pytest.mark.parametrize("scale,ratio,hflip", [((0.08, 1.0), (3 / 4, 4 / 3), 0.5), ((0.3, 0.6), (0.5, 2.0), 0.2)])
def test_crop_scale_ratio_and_flip_statistics_match_torchvision(tmp_path, scale, ratio, hflip):
    size = 32
    train = _train(_coordinate_folder(tmp_path), size, scale=scale, ratio=ratio, hflip=hflip, interpolation="bilinear")
    dali = DaliEpochLoader(train, 16, DistInfo(), workers=2, seed=1, pin_memory=False)
    ref = TorchEpochLoader(train, 16, DistInfo(), workers=0, seed=1, pin_memory=False)
    torch.manual_seed(0)
    a = _windows([b for e in range(15) for b in _epoch(dali, e)], size)  # 960 crops each
    b = _windows([b for e in range(15) for b in _epoch(ref, e)], size)
    for da, db in zip(a[:2], b[:2]):  # area fraction, log aspect ratio
        assert ks_2samp(da, db).pvalue > 1e-3
        se = np.sqrt(da.var() / len(da) + db.var() / len(db))
        assert abs(da.mean() - db.mean()) < 4 * se
    area = a[0]
    assert area.min() > scale[0] - 0.03 and area.max() < scale[1] + 0.03
    lr = a[1]
    assert lr.min() > np.log(ratio[0]) - 0.08 and lr.max() < np.log(ratio[1]) + 0.08
    se = np.sqrt(hflip * (1 - hflip) / len(a[2]))
    assert abs(a[2].mean() - hflip) < 4 * se and abs(b[2].mean() - hflip) < 4 * se


def test_ddp_shards_are_disjoint_covering_and_the_torch_loaders(ids):
    train = _train(ids)
    n, b, world = len(train), 4, 2
    train_ids = {int(os.path.basename(train.dataset.samples[i][0])[:3]) for i in train.indices}
    per_rank = []
    for rank in range(world):
        dali = DaliEpochLoader(train, b, DistInfo(rank, world), workers=2, seed=3, pin_memory=False)
        ref = TorchEpochLoader(train, b, DistInfo(rank, world), workers=0, seed=3, pin_memory=False)
        got = [i for x, _, _ in _epoch(dali, 1) for i in _ids(x)]
        assert got == [i for x, _, _ in _epoch(ref, 1) for i in _ids(x)]
        assert len(got) == len(dali) * b == steps_per_epoch(n, b, world) * b
        per_rank.append(got)
        assert got != [i for x, _, _ in _epoch(dali, 2) for i in _ids(x)]  # reshuffled each epoch
    union = set(per_rank[0]) | set(per_rank[1])
    assert not set(per_rank[0]) & set(per_rank[1])  # disjoint
    assert len(union) == world * steps_per_epoch(n, b, world) * b and union <= train_ids  # covering
    # the number of batches is the plan's for any batch and world size
    for world in (1, 2, 3):
        for b in (1, 3, 4, 7):
            loader = DaliEpochLoader(train, b, DistInfo(world - 1, world), workers=1, seed=0, pin_memory=False)
            assert len(loader) == steps_per_epoch(n, b, world)
    batches = _epoch(DaliEpochLoader(train, 3, DistInfo(2, 3), workers=1, seed=0, pin_memory=False), 0)
    assert len(batches) == steps_per_epoch(n, 3, 3) == (n // 3) // 3 and all(x.shape[0] == 3 for x, _, _ in batches)


def test_epochs_are_reproducible_for_resume(ids):
    train = _train(ids)
    first = DaliEpochLoader(train, 4, DistInfo(1, 2), workers=2, seed=7, pin_memory=False)
    run = [_epoch(first, e) for e in range(3)]
    resumed = DaliEpochLoader(train, 4, DistInfo(1, 2), workers=1, seed=7, pin_memory=False)  # fewer threads too
    for e in (2, 1):  # a fresh process starting at epoch e sees the same images, crops and flips
        again = _epoch(resumed, e)
        assert all(torch.equal(x, xa) and torch.equal(y, ya) for (x, y, _), (xa, ya, _) in zip(run[e], again))
    other = DaliEpochLoader(train, 4, DistInfo(1, 2), workers=2, seed=8, pin_memory=False)
    assert not torch.equal(run[1][0][0], _epoch(other, 1)[0][0])


def test_readable_checks():
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (1, 2, 3)).save(buf, "JPEG")
    jpeg = buf.getvalue()
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (1, 2, 3)).save(buf, "PNG")
    png = buf.getvalue()
    bmp = io.BytesIO()
    Image.new("RGB", (16, 16)).save(bmp, "BMP")
    assert looks_complete(jpeg) and looks_complete(jpeg + b"\0\0") and looks_complete(png)
    assert not looks_complete(jpeg[:-40]) and not looks_complete(png[:-20]) and not looks_complete(b"text")
    assert not looks_complete(bmp.getvalue()) and readable(bmp.getvalue())  # other formats: PIL decides
    assert readable(jpeg + b"trailing bytes after EOI") and not readable(jpeg[: len(jpeg) // 2])


def corrupt_epochs(root: str) -> None:
    """Both loaders over ``root`` (with unreadable files), both ranks of two, two epochs; prints what they replace."""
    train = build_datasets("imagefolder", root, 32).train
    for rank in (0, 1):
        for name in ("torch", "dali"):
            loader = LOADERS[name](train, 3, DistInfo(rank, 2), workers=2, seed=0, pin_memory=False)
            for epoch in range(2):
                batches = _epoch(loader, epoch)
                bad = sorted(os.path.basename(p) for _, _, skipped in batches for p in skipped)
                images = sum(x.shape[0] for x, _, _ in batches)
                assert all(x.shape[0] == y.shape[0] for x, y, _ in batches)
                print(f"RESULT {name} {rank} {epoch} {len(batches)} {images} {','.join(bad) or '-'} "
                      f"{getattr(loader, 'rebuilds', 0)}")


def test_corrupt_images_are_replaced_and_counted_like_torch(tmp_path):
    root = make_photo_folder(tmp_path, per_class=5, val_per_class=1)
    cls = os.path.join(root, "train", "chelsea")
    good = open(os.path.join(cls, "00000.jpg"), "rb").read()
    open(os.path.join(cls, "truncated.jpg"), "wb").write(good[: len(good) // 2])
    open(os.path.join(cls, "text.jpg"), "wb").write(b"this is a text file, not a JPEG\n")
    # starts and ends like a JPEG: passes the marker check, stops DALI's decoder (the rebuild path)
    open(os.path.join(cls, "scrambled.jpg"), "wb").write(good[:4] + os.urandom(3000) + b"\xff\xd9")
    code = f"import sys; sys.path.insert(0, {os.path.join(REPO, 'python_tests')!r}); " \
           f"import test_dali_loader as t; t.corrupt_epochs({str(root)!r})"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240,  # never a hang
                          env=dict(os.environ, PYTHONPATH=REPO))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {tuple(r[1:4]): r[4:] for r in (line.split() for line in proc.stdout.splitlines())
            if r and r[0] == "RESULT"}
    assert len(rows) == 8
    for rank in "01":
        for epoch in "01":
            t, d = rows["torch", rank, epoch], rows["dali", rank, epoch]
            assert d[:3] == t[:3]  # batches, images, replaced files: the same (same samples in the same order)
            assert t[0] == "3" and t[1] == "9"  # every batch full: unreadable images are replaced, not dropped
        skipped = {f for epoch in "01" for f in rows["torch", rank, epoch][2].split(",")} - {"-"}
        # the file that passes the marker check costs one pipeline rebuild on the rank that holds it, then is known
        assert rows["dali", rank, "1"][3] == ("1" if "scrambled.jpg" in skipped else "0")
    every = {f for r in rows.values() for f in r[2].split(",")} - {"-"}
    assert every == {"truncated.jpg", "text.jpg", "scrambled.jpg"}


def test_loader_errors(tmp_path):
    if os.path.isdir(FMNIST):
        with pytest.raises(DataError, match="decodes image files itself, but the training set is a FashionMNIST"):
            DaliEpochLoader(FashionMNIST(FMNIST, True), 4, DistInfo(), workers=1, seed=0, pin_memory=False)
    if not torch.cuda.is_available():
        with pytest.raises(DataError, match="no CUDA GPU is visible"):
            decode_device("mixed", on_cuda=False)
    assert decode_device("auto", on_cuda=False) == "cpu"
    with pytest.raises(ConfigError, match="data.loader=dali decodes image files"):
        load_config(overrides=["data.loader=dali", "data.dataset=fashion_mnist"])
    with pytest.raises(ConfigError, match="data.dali_device applies to data.loader=dali"):
        load_config(overrides=["data.dali_device=cpu"])
    with pytest.raises(ConfigError, match="data.loader: Input should be 'torch' or 'dali'"):
        load_config(overrides=["data.loader=nvidia"])
    with pytest.raises(ConfigError, match="dali_device=mixed decodes on the GPU, but train.device is cpu"):
        load_config(overrides=["data.loader=dali", "data.dali_device=mixed", "train.device=cpu"])


def test_same_batches_from_tar_shards_as_from_the_folder(ids, tmp_path):
    # shards written in folder order hold the folder's samples at the same indices: identical batches
    patterns = write_shards(ids, str(tmp_path), shard_size=10, seed=None, progress=False)
    folder = build_datasets("imagefolder", ids, 32, val_split=0.2).train
    shards = build_datasets("wds", None, 32, shards=patterns["train"], val_split=0.2).train
    a = _epoch(DaliEpochLoader(folder, 4, DistInfo(), workers=1, seed=2, pin_memory=False), 0)
    b = _epoch(DaliEpochLoader(shards, 4, DistInfo(), workers=1, seed=2, pin_memory=False), 0)
    assert len(a) == len(b) > 0
    assert all(torch.equal(x, xb) and torch.equal(y, yb) for (x, y, _), (xb, yb, _) in zip(a, b))


def test_etrain_train_one_epoch_with_the_dali_loader(photos, tmp_path):
    args = tiny_args(tmp_path, "dali", "--dataset", "imagefolder", "--data-root", photos, "--curriculum", "none",
                     "--set", "data.loader=dali", subset=16, val=6, batch=8, epochs=1)
    proc = run_etrain(args)
    (row,) = metrics(tmp_path / "dali")
    assert row["train_images"] == 16 and row["loaded_images"] == 16 and row["skipped_images"] == 0
    assert 0 <= row["top1"] <= 100 and "final: top1" in proc.stdout


def test_ddp_training_with_the_dali_loader_and_a_corrupt_image(photos, tmp_path):
    # 2 gloo ranks under torchrun: the trainer accepts the loader's batch count on each rank and the ranks replace
    # a batch's unreadable image without waiting on each other
    root = tmp_path / "data"
    shutil.copytree(photos, root)
    (root / "train" / "coffee" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a JPEG")
    args = tiny_args(tmp_path, "ddp", "--dataset", "imagefolder", "--data-root", str(root), "--curriculum", "none",
                     "--device", "cpu", "--set", "data.loader=dali", subset="null", val=6, batch=4, epochs=1)
    run_torchrun(args)
    (row,) = metrics(tmp_path / "ddp")
    # 25 images: 12 per rank, 3 full batches of 4 per rank; the broken one, if drawn, is replaced by the next image
    # (skipped_images: the union over ranks)
    assert row["loaded_images"] == row["train_images"] == 24 and row["skipped_images"] <= 1


@requires_cuda
def test_mixed_decoding_on_the_gpu(photos):
    train = _train(photos)
    gpu = DaliEpochLoader(train, 4, DistInfo(0, 2), workers=2, seed=5, pin_memory=True, device="mixed")
    cpu = DaliEpochLoader(train, 4, DistInfo(0, 2), workers=2, seed=5, pin_memory=False, device="cpu")
    for (x, y, _), (xc, yc, _) in zip(_epoch(gpu, 0), _epoch(cpu, 0)):
        assert x.is_cuda and x.dtype == torch.uint8 and x.shape == xc.shape and torch.equal(y, yc)
        assert abs(x.float().mean().item() - xc.float().mean().item()) < 40
