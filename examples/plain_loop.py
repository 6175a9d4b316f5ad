"""EfficientTrain in a plain PyTorch training loop (docs/integrations.md).

    python examples/plain_loop.py --data DIR [--model resnet18] [--epochs 30] [--size 224]

DIR holds train/<class>/*.jpg and val/<class>/*.jpg. The loader yields uint8 images at the final size (crop and
flip only); the curriculum does the rest on the device: RandAugment at the schedule's magnitude, the
low-frequency crop to the stage's size B, normalisation. Prints one line per epoch.
"""

from __future__ import annotations

import argparse
import ast

import timm
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from efficienttrain_ext.curriculum import plan, resized_view
from efficienttrain_ext.integrations import IMAGENET_MEAN, IMAGENET_STD, CurriculumBatch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--model", default="resnet18")
    p.add_argument("--model-kwargs", default="{}", help="dict of timm.create_model arguments, e.g. \"{'drop_path_rate': 0.1}\"")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--size", type=int, default=224, help="final input size")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-3)
    args = p.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    train_set = datasets.ImageFolder(f"{args.data}/train", transforms.Compose([
        transforms.RandomResizedCrop(args.size), transforms.RandomHorizontalFlip(), transforms.PILToTensor()]))
    val_set = datasets.ImageFolder(f"{args.data}/val", transforms.Compose([
        transforms.Resize(int(args.size / 0.875)), transforms.CenterCrop(args.size), transforms.PILToTensor()]))
    train = DataLoader(train_set, args.batch_size, shuffle=True, drop_last=True, num_workers=args.workers)
    val = DataLoader(val_set, args.batch_size, num_workers=args.workers)

    model = timm.create_model(args.model, num_classes=len(train_set.classes), **ast.literal_eval(args.model_kwargs)).to(device)
    schedule = plan("efficienttrain", epochs=args.epochs, final_size=args.size, model=model)
    curriculum = CurriculumBatch(schedule, IMAGENET_MEAN, IMAGENET_STD)
    curriculum.switch(model, 0)  # ViT/Swin: built for the first stage's size before the optimizer sees it
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)

    for epoch in range(schedule.epochs):
        curriculum.switch(model, epoch, optimizer)  # a new stage: resized in place, the optimizer follows
        model.train()
        for i, (x, y) in enumerate(train):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            x = curriculum(x, epoch=epoch, step=i, steps=len(train))  # uint8 at v -> augmented float at B
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        evaluated = resized_view(model, args.size).eval()  # the final size (a copy for a ViT trained at B)
        hits = total = 0
        with torch.no_grad():
            for x, y in val:
                out = evaluated(curriculum.eval(x.to(device)))
                hits += int((out.argmax(1) == y.to(device)).sum())
                total += len(y)
        print(f"epoch {epoch + 1}/{schedule.epochs} B {curriculum.size} m {curriculum.magnitude:.2f} "
              f"loss {loss.item():.4f} top1 {100 * hits / max(total, 1):.2f}", flush=True)


if __name__ == "__main__":
    main()
