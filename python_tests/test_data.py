"""Fashion-MNIST IDX reader, ImageFolder with corrupt files, host transforms."""

from __future__ import annotations

import gzip
import os
import struct

import numpy as np
import pytest
import torch

from efficienttrain_ext.data import DataError, FashionMNIST, SafeImageFolder, collate_skip, eval_transform, read_idx

from _etrain_helpers import FMNIST, make_image_folder


def _write_idx(path, array, code):
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    with (gzip.open if str(path).endswith(".gz") else open)(path, "wb") as f:
        f.write(data)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_idx_roundtrip(tmp_path, suffix):
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    _write_idx(tmp_path / f"a{suffix}", a, 0x08)
    np.testing.assert_array_equal(read_idx(tmp_path / f"a{suffix}"), a)
    b = np.array([-3, 70000, 5], dtype=np.int32)
    _write_idx(tmp_path / f"b{suffix}", b, 0x0C)  # big-endian int32 on disk
    np.testing.assert_array_equal(read_idx(tmp_path / f"b{suffix}"), b)


def test_read_idx_rejects_bad_files(tmp_path):
    (tmp_path / "x").write_bytes(b"GIF89a....")
    with pytest.raises(DataError, match="not an IDX file"):
        read_idx(tmp_path / "x")
    (tmp_path / "y").write_bytes(bytes([0, 0, 8, 1]) + struct.pack(">I", 10) + b"\x00" * 4)
    with pytest.raises(DataError, match="header says"):
        read_idx(tmp_path / "y")


@pytest.mark.skipif(not os.path.isdir(FMNIST), reason="dataset-fashion-mnist is not installed")
def test_fashion_mnist_files():
    train, test = FashionMNIST(FMNIST, True), FashionMNIST(FMNIST, False)
    assert train.images.shape == (60000, 28, 28) and test.images.shape == (10000, 28, 28)
    # published facts: 6,000 training / 1,000 test images per class; the first training label is 9 (ankle boot)
    assert np.bincount(train.targets).tolist() == [6000] * 10
    assert np.bincount(test.targets).tolist() == [1000] * 10
    assert train.targets[0] == 9
    img, label = train[0]
    assert img.mode == "RGB" and img.size == (28, 28) and label == 9
    rgb = np.asarray(img)
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 0] == train.images[0]).all()


def test_image_folder_skips_corrupt_and_errors_on_empty(tmp_path):
    root = make_image_folder(tmp_path / "d", per_class=2)
    (root / "train" / "square" / "zz_corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    ds = SafeImageFolder(str(root / "train"), eval_transform(32))
    batch = [ds[i] for i in range(len(ds))]
    x, y, bad = collate_skip(batch)
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.uint8
    assert len(bad) == 1 and bad[0].endswith("zz_corrupt.jpg")
    (tmp_path / "e" / "train").mkdir(parents=True)
    with pytest.raises(DataError, match="no images found"):
        SafeImageFolder(str(tmp_path / "e" / "train"))


def test_eval_transform_resize_then_centre_crop():
    from PIL import Image

    # a 64x64 image whose border is black and centre white: crop_pct 0.875 at 32 resizes to 37 and crops 32
    a = np.zeros((64, 64, 3), np.uint8)
    a[4:60, 4:60] = 255
    out = eval_transform(32, crop_pct=0.875)(Image.fromarray(a))
    assert out.shape == (3, 32, 32)
    assert round(32 / 0.875) == 37
    # the 4-pixel black border scales to ~2.3 px and the 2-px-per-side crop removes most of it
    assert out[:, 16, 16].tolist() == [255, 255, 255] and out.float().mean() > 240
