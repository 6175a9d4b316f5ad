"""A plain LightningModule and data for the Lightning callback tests (also run by lightning_ddp_run.py).

The module knows nothing of EfficientTrain: it records what its training and validation steps receive."""

from __future__ import annotations

import lightning.pytorch as pl
import timm
import torch
import torch.nn.functional as F
from timm.utils import ModelEmaV3
from torch.utils.data import DataLoader, TensorDataset

TINY_DEIT = dict(depth=1, embed_dim=32, num_heads=2)


def tiny_deit(img_size: int = 96, num_classes: int = 4):
    return timm.create_model("deit_tiny_patch16_224", num_classes=num_classes, img_size=img_size, **TINY_DEIT)


class Classifier(pl.LightningModule):
    def __init__(self, model: torch.nn.Module, lr: float = 1e-3, ema: bool = True):
        super().__init__()
        self.model = model
        self.ema = ModelEmaV3(model, decay=0.9) if ema else None
        if self.ema is not None:
            self.ema.requires_grad_(False)  # DDP would wait for its gradients
        self.lr = lr
        self.train_seen: list[tuple[int, int, tuple, str]] = []  # (epoch, batch_idx, shape, dtype)
        self.val_sizes: list[int] = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        self.train_seen.append((self.current_epoch, batch_idx, tuple(x.shape), str(x.dtype)))
        return F.cross_entropy(self.model(x), y)

    def on_train_batch_end(self, outputs, batch, batch_idx):
        if self.ema is not None:
            self.ema.update(self.model)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.val_sizes.append(int(x.shape[-1]))
        loss = F.cross_entropy(self.model(x), y)
        if self.ema is not None:
            self.ema.module(x)
        self.log("val_loss", loss)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.model.parameters(), lr=self.lr)


def uint8_images(n: int, size: int = 96, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
    y = torch.arange(n) % 4
    return x, y


def loaders(n_train: int = 16, n_val: int = 8, batch: int = 8, size: int = 96):
    train = DataLoader(TensorDataset(*uint8_images(n_train, size)), batch_size=batch, shuffle=True)
    val = DataLoader(TensorDataset(*uint8_images(n_val, size, seed=1)), batch_size=batch)
    return train, val
