"""Fashion-MNIST IDX reader, ImageFolder with corrupt files, host transforms."""

from __future__ import annotations

import gzip
import os
import struct

import numpy as np
import pytest
import torch

import shutil

from efficienttrain_ext import cli
from efficienttrain_ext.data import (DataError, FashionMNIST, SafeImageFolder, build_datasets, collate_skip, eval_transform,
                                    read_idx, resolve_dataset, stratified_split,
                                    stratified_subset)

from _etrain_helpers import FMNIST, make_image_folder, metrics, tiny_args


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


def test_stratified_split_is_seeded_disjoint_covering_and_stratified():
    targets = [0] * 50 + [1] * 30 + [2] * 7 + [3] * 2
    train, val = stratified_split(targets, 0.2, seed=3)
    assert sorted(train + val) == list(range(len(targets))) and not set(train) & set(val)
    counts = {c: sum(targets[i] == c for i in val) for c in range(4)}
    assert counts == {0: 10, 1: 6, 2: 1, 3: 1}  # round(0.2 n), at least one, at least one left for training
    assert stratified_split(targets, 0.2, seed=3) == (train, val)
    assert stratified_split(targets, 0.2, seed=4)[1] != val
    for bad in (0, 1, 1.5, -0.1, True):
        with pytest.raises(DataError, match="data.val_split must be a fraction"):
            stratified_split(targets, bad)
    with pytest.raises(DataError, match="class 4 has 1 image"):
        stratified_split(targets + [4], 0.2)


def test_stratified_subset_is_proportional_nested_and_seeded():
    targets = [0] * 50 + [1] * 30 + [2] * 20  # stored class by class, as an ImageFolder is
    sub = stratified_subset(targets, 10)
    assert sub == sorted(set(sub)) and len(sub) == 10
    assert [sum(targets[i] == c for i in sub) for c in range(3)] == [5, 3, 2]  # in proportion to the class counts
    for n in (1, 7, 33, 99, 100):
        s = stratified_subset(targets, n)
        counts = [sum(targets[i] == c for i in s) for c in range(3)]
        assert len(s) == n and all(abs(k - n * m / 100) <= 1 for k, m in zip(counts, (50, 30, 20)))
        assert set(stratified_subset(targets, max(1, n - 6))) <= set(s)  # nested
    assert stratified_subset(targets, 10, seed=0) == sub and stratified_subset(targets, 10, seed=1) != sub


def test_a_subset_of_an_image_folder_holds_every_class(tmp_path):
    # its first n files are its first classes: data.train_subset used to give a one-class training set
    root = make_image_folder(tmp_path / "d", classes=("a", "b"), per_class=6, size=16)
    for split in ("train", "val"):  # four classes (the helper draws two kinds)
        for src, dst in (("a", "c"), ("b", "d")):
            shutil.copytree(root / split / src, root / split / dst)
    ds = build_datasets("imagefolder", str(root), 16, train_subset=8, val_subset=4)
    train_targets = [ds.train.dataset.targets[i] for i in ds.train.indices]
    assert sorted(train_targets) == [0, 0, 1, 1, 2, 2, 3, 3]
    assert sorted(ds.val.dataset.targets[i] for i in ds.val.indices) == [0, 1, 2, 3]
    # under val_split too (a subset of a split: indices into the folder itself)
    ds = build_datasets("imagefolder", str(root), 16, train_subset=4, val_split=0.25)
    assert isinstance(ds.train.dataset, SafeImageFolder)
    assert sorted(ds.train.dataset.targets[i] for i in ds.train.indices) == [0, 1, 2, 3]
    # Fashion-MNIST and CIFAR-10 are stored shuffled: their subsets stay the first n images (recorded results)


def test_data_root_kind_is_detected(tmp_path):
    root = make_image_folder(tmp_path / "folder", per_class=4)
    assert resolve_dataset("auto", str(root)) == "imagefolder"
    assert resolve_dataset("auto", None) == "fashion_mnist"
    idx = tmp_path / "idx"
    idx.mkdir()
    (idx / "train-images-idx3-ubyte.gz").write_bytes(b"")
    assert resolve_dataset("auto", str(idx)) == "fashion_mnist"
    with pytest.raises(DataError, match="cannot tell what"):
        resolve_dataset("auto", str(tmp_path))
    with pytest.raises(DataError, match="does not exist"):
        resolve_dataset("auto", str(tmp_path / "nowhere"))
    assert resolve_dataset("imagefolder", None) == "imagefolder"


def test_image_folder_without_val_needs_val_split(tmp_path):
    root = make_image_folder(tmp_path / "d", per_class=10)
    for f in (root / "val").rglob("*.png"):
        f.unlink()
    for d in sorted((root / "val").iterdir()):
        d.rmdir()
    (root / "val").rmdir()
    with pytest.raises(DataError, match="no val/ folder.*data.val_split"):
        build_datasets("auto", str(root), 32)
    d = build_datasets("auto", str(root), 32, val_split=0.3)
    assert len(d.train) == 14 and len(d.val) == 6 and d.num_classes == 2
    # validation images use the evaluation transform (deterministic), training images the random one
    x1, x2 = d.val[0][0], d.val[0][0]
    assert torch.equal(x1, x2) and x1.shape == (3, 32, 32)
    assert {d.val[i][1] for i in range(len(d.val))} == {0, 1}


def test_etrain_train_on_a_data_root_without_dataset_flag(tmp_path, capsys):
    root = make_image_folder(tmp_path / "d", per_class=16)
    args = tiny_args(tmp_path, "folder", "--data-root", str(root), "--curriculum", "none", epochs=1, subset=32, val=16,
                     batch=8)
    assert cli.main(args) == 0
    assert metrics(tmp_path / "folder")[0]["train_images"] == 32
    # without val/: the error names data.val_split; with it, the run trains on a held-out part of train/
    shutil.rmtree(root / "val")
    assert cli.main(tiny_args(tmp_path, "noval", "--data-root", str(root), epochs=1, subset=16, val=8, batch=8)) == 2
    assert "data.val_split" in capsys.readouterr().err
    assert cli.main(tiny_args(tmp_path, "split", "--data-root", str(root), "--set", "data.val_split=0.25",
                              "--curriculum", "none", epochs=1, subset=16, val=8, batch=8)) == 0
