"""EfficientTrain with PyTorch Lightning: a plain LightningModule, the curriculum as a callback (docs/integrations.md).

    python examples/lightning_train.py --data DIR [--model deit_small_patch16_224] [--epochs 30] [--size 224]

DIR holds train/<class>/*.jpg and val/<class>/*.jpg. The module below knows nothing of the curriculum: the callback
replaces the uint8 images of every training batch by the curriculum's (RandAugment at m, low-frequency crop to B,
normalised), resizes ViT/Swin models at stage starts and evaluates at the final size. Add ``--devices 2`` for DDP.
"""

from __future__ import annotations

import argparse
import ast

import lightning.pytorch as pl
import timm
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from efficienttrain_ext.curriculum import plan
from efficienttrain_ext.integrations.lightning import EfficientTrain


class Classifier(pl.LightningModule):
    def __init__(self, model: torch.nn.Module, lr: float):
        super().__init__()
        self.model, self.lr = model, lr

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self.model(x), y)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_top1", (self.model(x).argmax(1) == y).float().mean() * 100, prog_bar=True, sync_dist=True)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.model.parameters(), lr=self.lr, weight_decay=0.05)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--model", default="deit_small_patch16_224")
    p.add_argument("--model-kwargs", default="{}", help="dict of timm.create_model arguments (a ViT built for "
                   "another size than 224 needs img_size)")
    p.add_argument("--curriculum", default="efficienttrain")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--size", type=int, default=224, help="final input size")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--devices", type=int, default=1)
    p.add_argument("--resume", help="a checkpoint of this script (checkpoints/last.ckpt)")
    args = p.parse_args()

    # uint8 images at the final size: the curriculum augments, crops and normalises on the device
    train_set = datasets.ImageFolder(f"{args.data}/train", transforms.Compose([
        transforms.RandomResizedCrop(args.size), transforms.RandomHorizontalFlip(), transforms.PILToTensor()]))
    val_set = datasets.ImageFolder(f"{args.data}/val", transforms.Compose([
        transforms.Resize(int(args.size / 0.875)), transforms.CenterCrop(args.size), transforms.PILToTensor()]))
    train = DataLoader(train_set, args.batch_size, shuffle=True, drop_last=True, num_workers=args.workers)
    val = DataLoader(val_set, args.batch_size, num_workers=args.workers)

    net = timm.create_model(args.model, num_classes=len(train_set.classes), **ast.literal_eval(args.model_kwargs))
    schedule = plan(args.curriculum, epochs=args.epochs, final_size=args.size, model=net)
    trainer = pl.Trainer(max_epochs=schedule.epochs, devices=args.devices, accelerator="auto", logger=False,
                         callbacks=[EfficientTrain(args.curriculum, epochs=args.epochs, final_size=args.size),
                                    pl.callbacks.ModelCheckpoint("checkpoints", save_last=True)])
    trainer.fit(Classifier(net, args.lr), train, val, ckpt_path=args.resume)


if __name__ == "__main__":
    main()
