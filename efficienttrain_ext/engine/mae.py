"""``etrain mae``: masked-autoencoder pre-training of a timm ViT/DeiT with the curriculum, on the trainer's engine.

MAE is a task (:class:`MaeTask`: the masked-patch reconstruction loss) and a model
(:class:`~efficienttrain_ext.models.mae.MaeVisionTransformer`), so the run has everything ``etrain train`` has:
every curriculum (EfficientTrain's low-frequency crop to B with in-process switches of the patch grid and of the
encoder's and decoder's position embeddings; efficienttrain++, replay, batch_scale), AMP, torchrun DDP, exact
resume, metrics, progress bar and plots. MAE uses no RandAugment, so the curriculum's magnitude ramp has nothing
to act on (:data:`MAE_DEFAULTS` turn it, mixup/cutmix, erasing and label smoothing off).

At the end the run writes ``encoder.pth`` (the encoder's state dict at the final size, which the plain timm model
loads: ``timm.create_model(name, num_classes=0, pretrained=True, pretrained_cfg_overlay={"file": path})``, and
``encoder_ema.pth`` when EMA is on) and ``reconstruction.png`` (validation images: original, masked input,
reconstruction).
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from ..config import Config
from ..curriculum.switching import resized_view
from ..errors import TrainError
from ..models.mae import MaeVisionTransformer, patchify, unpatchify
from .atomic import write_atomic
from .model_factory import create_model
from .plots import new_figure
from .trainer import Trainer

__all__ = ["MAE_DEFAULTS", "MaeTask", "build_mae_model", "run_mae", "export_encoder", "plot_reconstructions"]

# `etrain mae`'s defaults on top of the configuration defaults (MAE's pre-training recipe, He et al. 2022, Table 8):
# RandomResizedCrop(0.2, 1) + flip and nothing else, AdamW (0.9, 0.95), lr 1.5e-4 x batch / 256, no EMA
MAE_DEFAULTS: dict[str, Any] = {
    "model": {"name": "vit_base_patch16_224", "drop_path": 0.0},
    "data": {"scale": [0.2, 1.0]},
    "aug": {"randaugment": None, "mixup": 0.0, "cutmix": 0.0, "smoothing": 0.0, "reprob": 0.0},
    "optim": {"base_lr": 1.5e-4, "base_batch": 256, "weight_decay": 0.05, "betas": [0.9, 0.95], "clip_grad": None,
              "warmup_epochs": 40},  # MAE Table 8: 40 warm-up epochs
    "train": {"epochs": 1600, "ema": False},
}

EVAL_SEED = 1234  # evaluation masks: the same sequence at every evaluation, apart from the training RNG


class MaeTask:
    """The masked-patch loss for training; for evaluation the same loss under masks drawn from a private
    generator that restarts at every evaluation (so epochs are compared on the same masks, and evaluating does not
    move the training RNG)."""

    primary = "val_loss"
    higher_is_better = False
    eval_width = 2  # loss x images, images

    def __init__(self, seed: int = EVAL_SEED):
        self.seed = seed
        self._gen: torch.Generator | None = None

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return model(x)[0]

    def eval_sums(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self._gen is None or self._gen.device != x.device:
            self._gen = torch.Generator(device=x.device).manual_seed(self.seed)
        loss = model(x, generator=self._gen)[0].detach()
        return torch.tensor([float(loss) * x.shape[0], float(x.shape[0])], dtype=torch.float64)

    def eval_metrics(self, sums: torch.Tensor) -> dict[str, float]:
        self._gen = None  # the next evaluation starts the mask sequence again
        return {"val_loss": float(sums[0]) / max(float(sums[1]), 1.0)}


def build_mae_model(cfg: Config) -> MaeVisionTransformer:
    """``cfg.model`` as the encoder (no classifier) inside MAE's masking and decoder (``cfg.mae``)."""
    encoder = create_model(cfg, num_classes=0)
    if not isinstance(encoder, VisionTransformer):
        raise TrainError(f"etrain mae needs a timm ViT/DeiT (VisionTransformer) encoder; {cfg.model.name} is a "
                         f"{type(encoder).__name__}. Choose e.g. --model vit_base_patch16_224 or deit_small_patch16_224")
    m = cfg.mae
    try:
        return MaeVisionTransformer(encoder, mask_ratio=m.mask_ratio, decoder_depth=m.decoder_depth,
                                    decoder_dim=m.decoder_dim, decoder_heads=m.decoder_heads,
                                    decoder_mlp_ratio=m.decoder_mlp_ratio, norm_pix_loss=m.norm_pix_loss,
                                    pos_embed=m.pos_embed)
    except (TypeError, ValueError) as e:
        raise TrainError(f"etrain mae: {e}") from e


def export_encoder(model: MaeVisionTransformer, path: str) -> None:
    """The encoder's state dict (tensors only, CPU), written atomically: the plain timm model's weights."""
    state = {k: v.detach().cpu().clone() for k, v in model.encoder.state_dict().items()}
    write_atomic(path, lambda f: torch.save(state, f))


@torch.no_grad()
def plot_reconstructions(model: MaeVisionTransformer, images: torch.Tensor, mean, std, path: str,
                         seed: int = EVAL_SEED) -> str:
    """``path``: one row per image (normalised inputs ``images``): original, masked input (masked patches grey),
    reconstruction, and the reconstruction with the visible patches pasted in. With ``norm_pix_loss`` the model
    predicts normalised patches; they are shown with each patch's true mean and variance put back (as MAE's
    visualisations do), so the figure shows structure, not the patch brightness the model never had to predict."""
    model.eval()
    device = next(model.parameters()).device
    x = images.to(device)
    loss, pred, mask = model(x, generator=torch.Generator(device=device).manual_seed(seed))
    p, grid, c = model.patch, model.grid, model.in_chans
    pred = pred.float()
    if model.norm_pix_loss:
        raw = patchify(x, p)
        pred = pred * (raw.var(-1, keepdim=True) + 1e-6) ** 0.5 + raw.mean(-1, keepdim=True)
    recon = unpatchify(pred, p, grid, c)
    hidden = unpatchify(mask.unsqueeze(-1).expand(-1, -1, p * p * c), p, grid, c)
    mean_t = torch.tensor(mean, device=device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, device=device).view(1, -1, 1, 1)

    def show(img: torch.Tensor) -> torch.Tensor:  # normalised -> displayable [N, H, W, C] in [0, 1]
        return (img * std_t + mean_t).clamp(0, 1).permute(0, 2, 3, 1).cpu()

    grey = (0.5 - mean_t) / std_t
    columns = [("original", show(x)), ("masked input", show(x * (1 - hidden) + grey * hidden)),
               ("reconstruction", show(recon)), ("reconstruction + visible", show(x * (1 - hidden) + recon * hidden))]
    n = x.shape[0]
    fig, _ = new_figure((1.8 * len(columns), 1.8 * n + 0.5))
    fig.clear()
    axes = fig.subplots(n, len(columns), squeeze=False)
    for i in range(n):
        for j, (title, imgs) in enumerate(columns):
            ax = axes[i][j]
            ax.imshow(imgs[i].numpy(), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(title, fontsize=8)
    note = "\n(normalised-pixel targets: predicted patches shown with their true mean and std)" \
        if model.norm_pix_loss else ""
    fig.suptitle(f"MAE: {model.mask_ratio:.0%} of {model.num_patches} patches masked, masked-patch loss "
                 f"{float(loss):.3f}{note}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    return path


def _validation_images(trainer: Trainer, n: int) -> torch.Tensor:
    """The first ``n`` validation images, prepared as evaluation inputs at the final size."""
    ds = trainer.data.val
    items = [ds[i] for i in range(min(n, len(ds)))]
    x = torch.stack([it[0] for it in items if it[0] is not None])
    return trainer.pipeline.eval(x, torch.zeros(x.shape[0], dtype=torch.long))[0]


def run_mae(cfg: Config, run_dir: str | None = None, resume: str | None = None, overwrite: bool = False) -> dict:
    """Pre-train ``cfg`` with MAE to the end; writes encoder.pth (and encoder_ema.pth) and reconstruction.png."""
    if cfg.aug.randaugment:
        warnings.warn("etrain mae with aug.randaugment set: MAE itself uses no RandAugment", stacklevel=2)
    trainer = Trainer(cfg, run_dir=run_dir, resume=resume, overwrite=overwrite,
                      model_factory=lambda _num_classes: build_mae_model(cfg), task=MaeTask())
    try:
        last = trainer.fit()
        if trainer.info.main:
            final = cfg.data.final_size
            model = resized_view(trainer.model, final)
            export_encoder(model, os.path.join(trainer.run_dir, "encoder.pth"))
            if trainer.ema is not None:
                export_encoder(resized_view(trainer.ema.module, final), os.path.join(trainer.run_dir,
                                                                                       "encoder_ema.pth"))
            print(f"encoder weights: {os.path.join(trainer.run_dir, 'encoder.pth')} (timm.create_model("
                  f"{cfg.model.name!r}, num_classes=0, pretrained=True, pretrained_cfg_overlay={{'file': ...}})",
                  flush=True)
            if cfg.mae.vis_images:
                path = plot_reconstructions(model, _validation_images(trainer, cfg.mae.vis_images), trainer.data.mean,
                                            trainer.data.std, os.path.join(trainer.run_dir, "reconstruction.png"))
                print(f"reconstructions: {path}", flush=True)
        return last
    finally:
        trainer.comm.close()
