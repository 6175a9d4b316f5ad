"""Webdataset tar shards (data.dataset: wds): written from an ImageFolder, read back by the webdataset package and
DALI's reader (independent references), random access with the same samples and labels, bad input."""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import time

import numpy as np
import pytest
import torch
from PIL import Image

from efficienttrain_ext import cli
from efficienttrain_ext.config import ConfigError, load_config
from efficienttrain_ext.data import DataError, SafeImageFolder, TarShardDataset, build_datasets, write_shards
from efficienttrain_ext.data.image_folder import collate_skip
from efficienttrain_ext.data.shards import expand_shards, index_path, read_index, sample_table, scan_tar, table_path
from efficienttrain_ext.data.transforms import eval_transform

from _etrain_helpers import make_image_folder, make_photo_folder, metrics, run_etrain, tiny_args

wds = pytest.importorskip("webdataset", reason="webdataset is not installed (pip install -e .[data])")


def _sha(b: bytes) -> str:
    return hashlib.sha1(bytes(b)).hexdigest()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    make_photo_folder(root, per_class=7, val_per_class=3)
    for split in ("train", "val"):  # a PNG among the JPEGs of each class
        for cls in ("astronaut", "chelsea", "coffee"):
            Image.open(root / split / cls / "00000.jpg").save(root / split / cls / "extra.png")
    return root


def _folder_samples(root, split):
    ds = SafeImageFolder(os.path.join(root, split))
    return ds, sorted((_sha(open(p, "rb").read()), t) for p, t in ds.samples)


def test_round_trip_through_webdataset_and_random_access(folder, tmp_path):
    patterns = write_shards(str(folder), str(tmp_path / "out"), shard_size=4, progress=False)
    for split in ("train", "val"):
        ds, expected = _folder_samples(folder, split)
        paths = expand_shards(patterns[split])
        assert len(paths) == -(-len(ds) // 4)  # ceil(n / shard_size) shards
        # the webdataset package reads the same images (bytes) with the same labels
        got = sorted((_sha(s[next(k for k in s if k in ("jpg", "png"))]), int(s["cls"]))
                     for s in wds.WebDataset(patterns[split], shardshuffle=False))
        assert got == expected
        # random access: same bytes and labels; decoded through the same transform, the same pixels
        et = eval_transform(32)
        tar = TarShardDataset(paths, et)
        folder_ds = SafeImageFolder(os.path.join(folder, split), et)
        by_sha = {_sha(open(p, "rb").read()): i for i, (p, _) in enumerate(folder_ds.samples)}
        assert len(tar) == len(folder_ds) and tar.classes == folder_ds.classes
        for i in range(len(tar)):
            j = by_sha[_sha(tar.encoded(i))]
            x, y, name = tar[i]
            x_ref, y_ref, _ = folder_ds[j]
            assert y == y_ref == tar.targets[i] and torch.equal(x, x_ref)
            assert name.startswith(paths[0].rsplit("-", 1)[0]) and ":" in name
    # the written order is shuffled (seeded) unless seed=None, which keeps the folder order
    plain = write_shards(str(folder), str(tmp_path / "plain"), shard_size=100, seed=None, progress=False)
    in_order = TarShardDataset(expand_shards(plain["train"]))
    ds = SafeImageFolder(os.path.join(folder, "train"))
    assert [_sha(in_order.encoded(i)) for i in range(len(ds))] == [_sha(open(p, "rb").read()) for p, _ in ds.samples]
    shuffled = TarShardDataset(expand_shards(patterns["train"]))
    assert shuffled.targets.tolist() != in_order.targets.tolist()
    assert sorted(shuffled.targets.tolist()) == sorted(in_order.targets.tolist())


def test_index_matches_dalis_wds2idx(folder, tmp_path):
    wds2idx = pytest.importorskip("wds2idx", reason="DALI's wds2idx is not installed")
    if shutil.which("tar") is None:
        pytest.skip("DALI's index creator needs GNU tar")
    patterns = write_shards(str(folder), str(tmp_path), shard_size=5, progress=False)
    for path in expand_shards(patterns["train"]):
        ref = str(tmp_path / "ref.idx")
        with wds2idx.IndexCreator(path, ref, verbose=False) as ic:
            ic.create_index()
        assert open(index_path(path)).read() == open(ref).read()
        assert read_index(ref) == scan_tar(path)


def test_dali_webdataset_reader_reads_the_shards(folder, tmp_path):
    pytest.importorskip("nvidia.dali", reason="NVIDIA DALI is not installed")
    from nvidia.dali import fn, pipeline_def

    patterns = write_shards(str(folder), str(tmp_path), shard_size=5, progress=False)
    paths = expand_shards(patterns["train"])
    _, expected = _folder_samples(folder, "train")

    @pipeline_def(batch_size=1, num_threads=1, device_id=None)
    def reader():
        img, cls = fn.readers.webdataset(paths=paths, index_paths=[index_path(p) for p in paths],
                                         ext=["jpg;png", "cls"], missing_component_behavior="error")
        return img, cls

    pipe = reader()
    pipe.build()
    got = []
    for _ in range(len(expected)):
        img, cls = pipe.run()
        got.append((_sha(np.array(img[0]).tobytes()), int(bytes(np.array(cls[0])).decode())))
    assert sorted(got) == expected


def test_corrupt_member_is_skipped_like_the_image_folder(tmp_path):
    root = make_image_folder(tmp_path / "data", per_class=3)
    (root / "train" / "circle" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    patterns = write_shards(str(root), str(tmp_path / "out"), shard_size=100, seed=None, progress=False)
    tar = TarShardDataset(expand_shards(patterns["train"]), eval_transform(16))
    folder_ds = SafeImageFolder(str(root / "train"), eval_transform(16))
    bad = [i for i in range(len(tar)) if tar[i][0] is None]
    assert [folder_ds.samples[i][0] for i in range(len(folder_ds)) if folder_ds[i][0] is None] == \
        [str(root / "train" / "circle" / "broken.png")]
    assert len(bad) == 1 and tar.targets[bad[0]] == folder_ds.class_to_idx["circle"]
    x, y, dropped = collate_skip([tar[i] for i in range(len(tar))])
    assert x.shape[0] == len(tar) - 1 and dropped == [tar.sample_name(bad[0])]


def test_stale_or_missing_index_is_rebuilt(tmp_path):
    root = make_image_folder(tmp_path / "data", per_class=2)
    patterns = write_shards(str(root), str(tmp_path / "out"), shard_size=100, progress=False)
    (path,) = expand_shards(patterns["train"])
    reference = TarShardDataset([path])
    for sidecar in (index_path(path), table_path(path)):
        os.unlink(sidecar)
    again = TarShardDataset([path])  # scanned, and both written again
    assert os.path.isfile(index_path(path)) and os.path.isfile(table_path(path))
    assert again.targets.tolist() == reference.targets.tolist() and len(again) == 4
    assert [again.encoded(i) for i in range(4)] == [reference.encoded(i) for i in range(4)]
    # wrong sidecars older than their tar are not trusted
    with open(index_path(path), "w") as f:
        f.write("v1.2 1\ncls 0 1 x.cls jpg 0 1 x.jpg\n")
    np.save(table_path(path), np.zeros(1, dtype=sample_table(path).dtype))
    past = time.time() - 100
    for sidecar in (index_path(path), table_path(path)):
        os.utime(sidecar, (past, past))
    assert TarShardDataset([path]).targets.tolist() == reference.targets.tolist()


def test_bad_shards_and_settings(tmp_path, capsys):
    root = make_image_folder(tmp_path / "data", per_class=2)
    with pytest.raises(DataError, match="2 files do not exist"):
        expand_shards(str(tmp_path / "none-{0..1}.tar"))
    no_label = tmp_path / "nolabel.tar"
    with tarfile.open(no_label, "w") as t:
        t.add(root / "train" / "circle" / "0.png", arcname="k0.png")
    with pytest.raises(DataError, match="needs an image .* and a .cls label"):
        TarShardDataset([str(no_label)])
    not_tar = tmp_path / "junk.tar"
    not_tar.write_bytes(b"this is not a tar archive" * 40)
    with pytest.raises(DataError, match="cannot read tar shard"):
        TarShardDataset([str(not_tar)])
    with pytest.raises(DataError, match="needs data.val_shards"):
        build_datasets("wds", None, 32, shards=str(no_label))
    # configuration, validated at load
    with pytest.raises(ConfigError, match="data.dataset=wds needs data.shards"):
        load_config(overrides=["data.dataset=wds"])
    with pytest.raises(ConfigError, match="data.shards applies to data.dataset=wds"):
        load_config(overrides=["data.dataset=imagefolder", "data.shards=/x-{0..1}.tar"])
    with pytest.raises(ConfigError, match="data.val_shards needs data.shards"):
        load_config(overrides=["data.val_shards=/x.tar"])
    # the CLI: written once, then refused without --overwrite; a missing folder
    out = tmp_path / "out"
    assert cli.main(["shards", str(root), str(out), "--shard-size", "3"]) == 0
    printed = capsys.readouterr().out
    assert f"train: {out}/train-{{000000..000001}}.tar" in printed and "--dataset wds" in printed
    assert cli.main(["shards", str(root), str(out)]) == 2
    assert "already holds train shards" in capsys.readouterr().err
    assert cli.main(["shards", str(root), str(out), "--overwrite", "--shard-size", "0"]) == 2
    assert "--shard-size must be >= 1" in capsys.readouterr().err
    assert cli.main(["shards", str(tmp_path / "missing"), str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_train_one_epoch_on_shards_with_the_torch_loader(tmp_path):
    root = make_image_folder(tmp_path / "data", per_class=12)
    patterns = write_shards(str(root), str(tmp_path / "shards"), shard_size=5, progress=False)
    args = tiny_args(tmp_path, "wds", "--dataset", "wds", "--set", f"data.shards={patterns['train']}",
                     "--set", "data.val_split=0.25", "--curriculum", "none", subset=16, val=8, batch=8, epochs=1)
    run_etrain(args)
    (row,) = metrics(tmp_path / "wds")
    assert row["train_images"] == 16 and row["skipped_images"] == 0 and 0 <= row["top1"] <= 100
