"""Datasets and host-side transforms (decode, RandomResizedCrop at the final size, flip -> uint8).

Workers do only what does not depend on the curriculum, so the host cost is the same at every B; the rest runs
on the training device (:class:`~efficienttrain_ext.engine.pipeline.BatchPipeline`). ``shards`` holds the
webdataset tar shards (``data.dataset: wds``), ``dali_pipeline`` the NVIDIA DALI loader (``data.loader: dali``)
and ``encoded`` the undecoded view of a dataset that it reads.
"""

from .build import DATASETS, IMAGENET_MEAN, IMAGENET_STD, Datasets, build_datasets, resolve_dataset
from .cifar10 import download_cifar10, load_cifar10
from .fashion_mnist import FASHION_MNIST_CLASSES, FASHION_MNIST_ROOT, FashionMNIST, read_idx
from .image_folder import SafeImageFolder, collate_skip
from .order import GlobalBatchSampler, epoch_permutation
from .shards import TarShardDataset, expand_shards, write_shards
from .splits import stratified_split, stratified_subset
from .transforms import eval_transform, train_transform
from .unreadable import ReplaceUnreadable, collate_replaced
from ..errors import DataError

__all__ = ["DataError", "DATASETS", "Datasets", "build_datasets", "resolve_dataset", "load_cifar10", "download_cifar10",
           "FashionMNIST", "FASHION_MNIST_ROOT", "FASHION_MNIST_CLASSES", "read_idx", "SafeImageFolder", "collate_skip",
           "GlobalBatchSampler", "epoch_permutation", "ReplaceUnreadable", "collate_replaced",
           "TarShardDataset", "expand_shards", "write_shards",
           "stratified_split", "stratified_subset", "train_transform", "eval_transform", "IMAGENET_MEAN", "IMAGENET_STD"]
