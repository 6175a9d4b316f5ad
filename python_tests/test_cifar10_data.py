"""``--dataset cifar10`` in each of its forms (JPEG/PNG archive, its folder, the python pickle directory), archives
as data roots (unpacked once, atomically), ImageFolders with train/ and test/ but no val/, and the CIFAR stem."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import shutil
import tarfile

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from efficienttrain_ext import cli
from efficienttrain_ext.data import DataError, build_datasets
from efficienttrain_ext.data.archives import data_root, unpack_archive
from efficienttrain_ext.data.cifar10 import load_cifar10

from _etrain_helpers import REPO, make_image_folder, metrics, tiny_args

CLASSES = ["cat", "dog", "ship"]
SHARED_CIFAR = os.path.join(os.environ.get("ETRAIN_SHARED", os.path.join(REPO, "..", "shared")), "data",
                            "cifar10-jpg.tar.gz")


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ETRAIN_CACHE", str(tmp_path / "cache"))


def _images(n, seed):
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def _write_tree(root, per_class=(4, 2)):
    """train/ and test/ class folders of lossless PNGs; returns {split: {(class index, image bytes)}}."""
    expected = {}
    for split, n in zip(("train", "test"), per_class):
        expected[split] = set()
        for ci, cls in enumerate(CLASSES):
            os.makedirs(root / split / cls)
            for k, img in enumerate(_images(n, seed=10 * ci + (split == "test"))):
                Image.fromarray(img).save(root / split / cls / f"{k:04d}.png")
                expected[split].add((ci, img.tobytes()))
    return expected


def _pairs(ds):
    return {(int(t), ds.images[i].tobytes()) for i, t in enumerate(ds.targets)}


def _tar(src, dest, top=""):
    with tarfile.open(dest, "w:gz") as tar:
        for name in sorted(os.listdir(src)):
            tar.add(src / name, arcname=os.path.join(top, name) if top else name)
    return dest


def test_cifar10_from_archive_and_folder(tmp_path, capsys):
    expected = _write_tree(tmp_path / "tree")
    archive = _tar(tmp_path / "tree", tmp_path / "c.tar.gz")
    for root in (archive, tmp_path / "tree"):
        train, test = load_cifar10(str(root))
        assert train.classes == CLASSES and _pairs(train) == expected["train"] and _pairs(test) == expected["test"]
        # a fixed shuffle, so the first n images (data.train_subset) hold every class
        assert set(train.targets[:6]) == {0, 1, 2} and train.targets != sorted(train.targets)
    assert capsys.readouterr().out.count("unpacking") == 1
    unpacked = unpack_archive(str(archive))
    assert sorted(os.listdir(unpacked)) == [".etrain-decoded-test.npz", ".etrain-decoded-train.npz", "test", "train"]
    # the decoded cache is read while the tree is unchanged, and decoded afresh when an image is added
    cache = os.path.join(unpacked, ".etrain-decoded-train.npz")
    stamp = os.stat(cache).st_mtime_ns
    again, _ = load_cifar10(str(archive))
    assert again.targets == train.targets and np.array_equal(again.images, train.images)
    assert os.stat(cache).st_mtime_ns == stamp
    shutil.copy(tmp_path / "tree" / "train" / "cat" / "0000.png", os.path.join(unpacked, "train", "cat", "extra.png"))
    grown, _ = load_cifar10(str(archive))
    assert len(grown) == len(train) + 1 and capsys.readouterr().out.count("unpacking") == 0
    assert os.stat(cache).st_mtime_ns != stamp
    d = build_datasets("cifar10", str(archive), 32, crop_pct=1.0)
    assert d.num_classes == 3 and len(d.val) == 6 and d.mean[0] == pytest.approx(0.4914)
    x, y = d.val[0]
    assert x.dtype == torch.uint8 and x.shape == (3, 32, 32)
    assert torch.equal(x, torch.from_numpy(d.val.images[0]).permute(2, 0, 1))  # crop_pct 1: the image itself


def _write_pickles(folder, per_batch=3, test=4):
    os.makedirs(folder)
    expected = {"train": ([], []), "test": ([], [])}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for k, name in enumerate(names):
        n = test if name == "test_batch" else per_batch
        imgs, labels = _images(n, seed=100 + k), [(k + j) % 3 for j in range(n)]
        with open(folder / name, "wb") as f:  # the official layout: N x 3072 channel planes, a 'labels' list
            pickle.dump({"data": imgs.transpose(0, 3, 1, 2).reshape(n, -1), "labels": labels,
                         "batch_label": name}, f)
        split = "test" if name == "test_batch" else "train"
        expected[split][0].append(imgs)
        expected[split][1].extend(labels)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)], "num_vis": 3072}, f)
    return {s: (np.concatenate(a), b) for s, (a, b) in expected.items()}


def test_cifar10_from_the_pickle_directory(tmp_path):
    expected = _write_pickles(tmp_path / "dl" / "cifar-10-batches-py")
    for root in (tmp_path / "dl", tmp_path / "dl" / "cifar-10-batches-py"):
        train, test = load_cifar10(str(root))
        assert np.array_equal(train.images, expected["train"][0]) and train.targets == expected["train"][1]
        assert np.array_equal(test.images, expected["test"][0]) and test.targets == expected["test"][1]
        assert train.classes == [f"c{i}" for i in range(10)] and len(train) == 15
    img, t = train[4]  # PIL image of the stored pixels
    assert np.array_equal(np.asarray(img), expected["train"][0][4]) and t == expected["train"][1][4]
    d = build_datasets("cifar10", str(tmp_path / "dl"), 32, val_split=0.5, crop_pct=1.0)
    assert len(d.train) + len(d.val) == 15  # held out of the training batches, not the test batch
    os.remove(tmp_path / "dl" / "cifar-10-batches-py" / "data_batch_3")
    with pytest.raises(DataError, match="lacks data_batch_3"):
        load_cifar10(str(tmp_path / "dl"))
    (tmp_path / "dl" / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="not a CIFAR-10 python batch"):
        load_cifar10(str(tmp_path / "dl"))


def test_cifar10_errors_name_what_was_looked_for(tmp_path):
    with pytest.raises(DataError, match="needs --data-root.*cifar10-jpg.tar.gz.*cifar-10-batches-py"):
        build_datasets("cifar10", None, 32)
    with pytest.raises(DataError, match="does not exist; expected the CIFAR-10 JPEG archive"):
        load_cifar10(str(tmp_path / "nowhere.tar.gz"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="neither train/ and test/ class folders nor the pickle directory"):
        load_cifar10(str(tmp_path / "empty"))
    (tmp_path / "bad.tar.gz").write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(DataError, match="cannot unpack"):
        load_cifar10(str(tmp_path / "bad.tar.gz"))
    assert not [p for p in (tmp_path / "cache" / "data").iterdir()]  # no half-unpacked folder is left
    big = make_image_folder(tmp_path / "big", size=40)
    os.rename(big / "val", big / "test")
    with pytest.raises(DataError, match="is 40x40; CIFAR-10 images are 32x32"):
        load_cifar10(str(big))


def _unpack(args):
    archive, cache = args
    return unpack_archive(archive, cache)


def test_concurrent_unpacks_agree(tmp_path):
    _write_tree(tmp_path / "tree", per_class=(20, 5))
    archive = str(_tar(tmp_path / "tree", tmp_path / "c.tar"))
    cache = str(tmp_path / "shared-cache")
    with multiprocessing.get_context("fork").Pool(3) as pool:
        outs = pool.map(_unpack, [(archive, cache)] * 3)
    assert len(set(outs)) == 1
    assert os.listdir(os.path.join(cache, "data")) == [os.path.basename(outs[0])]  # no temporary folder is left
    assert sum(len(files) for _, _, files in os.walk(outs[0])) == 75


def test_image_folder_with_train_and_test_validates_on_test(tmp_path, capsys):
    root = make_image_folder(tmp_path / "d", per_class=8)
    os.rename(root / "val", root / "test")
    d = build_datasets("auto", str(root), 32)
    assert len(d.train) == 16 and len(d.val) == 8 and d.val.root == str(root / "test")
    assert "validating on test/" in capsys.readouterr().out
    # an archive of a tree under one top folder (flowers144.tar.gz: flowers/train, flowers/val) is that folder
    archive = _tar(tmp_path / "d", tmp_path / "f.tar.gz", top="flowers")
    assert os.path.basename(data_root(str(archive))) == "flowers"
    d = build_datasets("auto", str(archive), 32)
    assert len(d.train) == 16 and len(d.val) == 8


@pytest.mark.parametrize("name,blocks", [("resnet10_cifar", 1), ("resnet18_cifar", 2)])
def test_cifar_resnets_keep_the_resolution_in_their_first_stage(name, blocks):
    m = timm.create_model(name, num_classes=10, channels=[8, 16, 32, 64])
    assert len(m.layer1) == len(m.layer4) == blocks
    feats = {}
    for name in ("layer1", "layer4"):
        getattr(m, name).register_forward_hook(lambda mod, i, o, name=name: feats.__setitem__(name, o.shape))
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert feats == {"layer1": (2, 8, 32, 32), "layer4": (2, 64, 4, 4)}
    assert [f["reduction"] for f in m.feature_info] == [1, 1, 2, 4, 8]


@pytest.mark.skipif(not os.path.isfile(SHARED_CIFAR), reason="../shared/data/cifar10-jpg.tar.gz is not beside the "
                    "clone")
def test_etrain_train_on_the_cifar10_archive(tmp_path, monkeypatch):
    monkeypatch.delenv("ETRAIN_CACHE")  # the user's cache: only a machine's first run decodes the 60,000 photos
    args = tiny_args(tmp_path, "cifar", "--dataset", "cifar10", "--data-root", SHARED_CIFAR, "--curriculum", "none",
                     "--set", "model.kwargs={channels: [8, 16, 32, 64]}", epochs=1, subset=64, val=64, batch=16,
                     model=("--model", "resnet10_cifar"))
    assert cli.main(args) == 0
    row = metrics(tmp_path / "cifar")[0]
    assert row["train_images"] == 64 and 0.0 <= row["top1"] <= 100.0
