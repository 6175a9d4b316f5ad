"""``--dataset cifar10`` in each of its forms (JPEG/PNG archive, its folder, the python pickle directory), archives
as data roots (unpacked once, atomically), ImageFolders with train/ and test/ but no val/, and the CIFAR stem."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import shutil
import tarfile
import textwrap

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from efficienttrain_ext import cli
from efficienttrain_ext.data import DataError, build_datasets
from efficienttrain_ext.data.archives import data_root, unpack_archive
from efficienttrain_ext.data.cifar10 import load_cifar10

from _etrain_helpers import REPO, make_image_folder, metrics, run_torchrun, tiny_args

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


def _flip_byte(data: bytes, at: int) -> bytes:
    raw = bytearray(data)
    raw[at] ^= 0xFF
    return bytes(raw)


def test_damaged_archives_are_refused_not_unpacked_cut_short(tmp_path):
    # tarfile alone takes a damaged member header after the first for the end of the archive, and gzip checks its
    # CRC only at the end of the stream: each archive below would otherwise unpack with images missing or altered
    _write_tree(tmp_path / "tree")
    plain = _tar(tmp_path / "tree", tmp_path / "c.tar.gz").read_bytes()
    with tarfile.open(tmp_path / "c.tar.gz") as tar:
        late = tar.getmembers()[-3]  # a header near the end
        tar.fileobj.seek(0)
        raw = tar.fileobj.read()  # the uncompressed stream
    assert late.name.startswith("train/")
    damaged = {
        "header.tar": _flip_byte(raw, late.offset + 150),  # inside the header's checksum field
        "crc.tar.gz": _flip_byte(plain, len(plain) - 6),  # the gzip trailer's CRC-32
        "length.tar.gz": _flip_byte(plain, len(plain) - 2),  # the gzip trailer's length
    }
    for name, data in damaged.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(DataError, match="cannot unpack"):
            load_cifar10(str(tmp_path / name))
    assert not list((tmp_path / "cache" / "data").iterdir())  # no folder left, cut short or half-written
    # a damaged deflate stream (zlib.error, not an OSError) is refused the same way
    for at in (200, 300, 400):
        (tmp_path / "deflate.tar.gz").write_bytes(_flip_byte(plain, at))
        with pytest.raises(DataError, match="cannot unpack"):
            load_cifar10(str(tmp_path / "deflate.tar.gz"))
    assert not list((tmp_path / "cache" / "data").iterdir())
    (tmp_path / "whole.tar").write_bytes(raw)  # the intact stream, uncompressed, still unpacks
    assert len(load_cifar10(str(tmp_path / "whole.tar"))[0]) == 12


def test_the_decoded_cache_follows_every_change_of_the_tree(tmp_path):
    expected = _write_tree(tmp_path / "tree")
    first, _ = load_cifar10(str(tmp_path / "tree"))
    cache = tmp_path / "tree" / ".etrain-decoded-train.npz"
    assert cache.is_file() and _pairs(first) == expected["train"]
    # the same number of files, one replaced: the cache must not be read
    white = np.full((32, 32, 3), 255, np.uint8)
    Image.fromarray(white).save(tmp_path / "tree" / "train" / "dog" / "0001.png")
    replaced, _ = load_cifar10(str(tmp_path / "tree"))
    assert (1, white.tobytes()) in _pairs(replaced) and len(replaced) == len(first)
    # one moved to another class: same files, same bytes, another label
    os.rename(tmp_path / "tree" / "train" / "dog" / "0001.png", tmp_path / "tree" / "train" / "ship" / "moved.png")
    moved, _ = load_cifar10(str(tmp_path / "tree"))
    assert (2, white.tobytes()) in _pairs(moved) and (1, white.tobytes()) not in _pairs(moved)
    # a cache cut short (a full disk, a killed writer) is decoded again, not a crash
    cache.write_bytes(cache.read_bytes()[:100])
    again, _ = load_cifar10(str(tmp_path / "tree"))
    assert _pairs(again) == _pairs(moved)


def test_an_empty_class_folder_is_an_error(tmp_path):
    _write_tree(tmp_path / "tree")
    for f in os.listdir(tmp_path / "tree" / "test" / "dog"):
        os.remove(tmp_path / "tree" / "test" / "dog" / f)
    with pytest.raises(DataError, match="test/dog/ holds no images"):
        load_cifar10(str(tmp_path / "tree"))


def test_a_data_error_leaves_no_empty_run_directory(tmp_path, capsys):
    _write_tree(tmp_path / "tree")
    shutil.rmtree(tmp_path / "tree" / "test" / "dog")
    os.makedirs(tmp_path / "tree" / "test" / "dog")
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "notes.md").write_text("mine")
    for name in ("new", "kept"):
        args = tiny_args(tmp_path, name, "--dataset", "cifar10", "--data-root", str(tmp_path / "tree"),
                         model=("--model", "resnet10_cifar"))
        assert cli.main(args) == 2
        assert "test/dog/ holds no images" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()  # made by this run and still empty: removed
    assert os.listdir(tmp_path / "kept") == ["notes.md"]  # the user's directory stays as it was


@pytest.mark.parametrize("data,labels,msg", [
    (lambda x: x.astype(np.float32) / 255, None, "must hold pixels as uint8 .* float32"),
    (lambda x: x.astype(np.int64) + 200, None, r"must hold pixels as uint8 .* int64 in \[200, "),
    (None, lambda y: [-1] + y[1:], r"labels \[-1\] are not class indices 0-9"),
    (None, lambda y: y[:-1] + [10], r"labels \[10\] are not class indices 0-9"),
])
def test_pickle_batches_with_other_pixels_or_labels_are_refused(tmp_path, data, labels, msg):
    folder = tmp_path / "cifar-10-batches-py"
    expected = _write_pickles(folder)
    name = "test_batch" if labels and "10" in msg else "data_batch_2"
    with open(folder / name, "rb") as f:
        entry = pickle.load(f)

    def write(**changes):
        with open(folder / name, "wb") as f:
            pickle.dump(dict(entry, **changes), f)

    write(**({"data": data(entry["data"])} if data else {}), **({"labels": labels(entry["labels"])} if labels else {}))
    with pytest.raises(DataError, match=msg):
        load_cifar10(str(tmp_path))
    write(data=entry["data"].astype(np.int32))  # integers that fit in a byte (a re-pickled copy): the same pixels
    train, test = load_cifar10(str(tmp_path))
    assert np.array_equal(train.images, expected["train"][0]) and np.array_equal(test.images, expected["test"][0])


class _FakeCIFAR10:
    """torchvision.datasets.CIFAR10 with download=True, offline: writes a small pickle directory."""
    calls: list = []

    def __init__(self, root, train=True, download=False):
        type(self).calls.append((root, train, download))
        if download and not os.path.isdir(os.path.join(root, "cifar-10-batches-py")):
            _write_pickles(type(self).path(root))

    @staticmethod
    def path(root):
        import pathlib
        return pathlib.Path(root) / "cifar-10-batches-py"


def test_download_fetches_the_pickle_directory_once_and_says_why_it_failed(tmp_path, monkeypatch, capsys):
    import torchvision.datasets

    from efficienttrain_ext.config import ConfigError, load_config

    _FakeCIFAR10.calls = []
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", _FakeCIFAR10)
    root = str(tmp_path / "dl")
    with pytest.raises(DataError, match="does not exist.*data.download=true"):
        load_cifar10(root)
    assert _FakeCIFAR10.calls == []  # nothing is downloaded unasked
    train, test = load_cifar10(root, download=True)
    assert len(train) == 15 and len(test) == 4 and "downloading CIFAR-10 into" in capsys.readouterr().out
    assert _FakeCIFAR10.calls == [(root, True, True)]
    load_cifar10(root, download=True)  # there now: read, not fetched again
    assert len(_FakeCIFAR10.calls) == 1
    # a JPEG tree or archive already there is read as it is
    _write_tree(tmp_path / "jpg")
    assert len(load_cifar10(str(tmp_path / "jpg"), download=True)[0]) == 12 and len(_FakeCIFAR10.calls) == 1

    class Offline(_FakeCIFAR10):
        def __init__(self, root, train=True, download=False):
            raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", Offline)
    with pytest.raises(DataError, match="cannot download CIFAR-10 into .*name resolution"):
        load_cifar10(str(tmp_path / "elsewhere"), download=True)
    with pytest.raises(DataError, match="downloads into a folder"):
        load_cifar10(str(tmp_path / "missing.tar.gz"), download=True)
    with pytest.raises(ConfigError, match="data.download applies to data.dataset=cifar10"):
        load_config(None, ["data.download=true", "data.dataset=imagefolder"])


@pytest.mark.parametrize("device_cache", [False, True], ids=["host", "device_cache"])
def test_etrain_train_on_a_small_cifar10_archive(tmp_path, device_cache):
    # the whole path of `etrain train --dataset cifar10` on any machine (the shared archive may be absent):
    # EfficientTrain over 3 epochs (B = 22, 22, 32), on the host loader and on the device-cached one
    _write_tree(tmp_path / "tree", per_class=(8, 4))
    archive = _tar(tmp_path / "tree", tmp_path / "c.tar.gz")
    args = tiny_args(tmp_path, "cifar", "--dataset", "cifar10", "--data-root", str(archive), "--curriculum",
                     "efficienttrain", "--set", "model.kwargs={channels: [8, 16, 32, 64]}",
                     "--set", f"data.device_cache={str(device_cache).lower()}", epochs=3, subset=24, val=12,
                     batch=8, model=("--model", "resnet10_cifar"))
    assert cli.main(args) == 0
    rows = metrics(tmp_path / "cifar")
    assert [r["size"] for r in rows] == [22, 22, 32]
    assert all(r["train_images"] == 24 and 0.0 <= r["top1"] <= 100.0 for r in rows)


def test_the_device_cache_holds_the_cifar10_arrays_themselves(tmp_path, monkeypatch):
    from efficienttrain_ext.data import device_cache

    _write_tree(tmp_path / "tree", per_class=(8, 4))
    d = build_datasets("cifar10", str(tmp_path / "tree"), 32, crop_pct=1.0, train_subset=10)
    reads = []
    real = device_cache.read_images
    monkeypatch.setattr(device_cache, "read_images", lambda ds, **kw: reads.append(kw.get("what")) or real(ds, **kw))
    cached = device_cache.cache_datasets(d, torch.device("cpu"))
    assert reads == ["validation set"]  # the training images come from the decoded array, not through PIL
    base = d.train.dataset
    assert torch.equal(cached.train.images, torch.from_numpy(base.images[:10]).permute(0, 3, 1, 2))
    assert cached.train.targets.tolist() == base.targets[:10]
    assert torch.equal(cached.val.images, torch.from_numpy(d.val.images).permute(0, 3, 1, 2))


def test_under_torchrun_rank_0_downloads_and_the_other_ranks_wait(tmp_path, monkeypatch):
    # torchvision's CIFAR10 replaced in both processes (sitecustomize) by one that copies a small pickle directory
    # after a pause and logs each call: a rank that did not wait for rank 0 would find no data and stop
    _write_pickles(tmp_path / "src" / "cifar-10-batches-py", per_batch=8, test=8)
    hook, calls = tmp_path / "hook", tmp_path / "calls.log"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(textwrap.dedent(f"""
        import os, shutil, time
        import torchvision.datasets

        class CIFAR10:
            def __init__(self, root, train=True, download=False):
                with open({str(calls)!r}, "a") as f:
                    f.write(os.environ.get("RANK", "?") + "\\n")
                if os.environ.get("FAKE_OFFLINE"):
                    raise OSError("[Errno -3] Temporary failure in name resolution")
                time.sleep(3)
                shutil.copytree({str(tmp_path / "src")!r}, root, dirs_exist_ok=True)

        torchvision.datasets.CIFAR10 = CIFAR10
    """))

    def args(name):
        return tiny_args(tmp_path, name, "--dataset", "cifar10", "--data-root", str(tmp_path / name / "data"),
                         "--curriculum", "none", "--device", "cpu", "--set", "data.download=true", "--set",
                         "model.kwargs={channels: [8, 16, 32, 64]}", epochs=1, subset=16, val=8, batch=4,
                         model=("--model", "resnet10_cifar"))

    run_torchrun(args("dl"), path=[hook])
    assert calls.read_text().split() == ["0"]
    assert metrics(tmp_path / "dl")[0]["train_images"] == 16
    # offline: every rank stops with rank 0's reason instead of waiting for it
    monkeypatch.setenv("FAKE_OFFLINE", "1")
    proc = run_torchrun(args("offline"), path=[hook], check=False, timeout=180)
    assert proc.returncode != 0
    assert (proc.stdout + proc.stderr).count("cannot download CIFAR-10 into") >= 2, proc.stdout + proc.stderr
    assert calls.read_text().split() == ["0", "0"]
