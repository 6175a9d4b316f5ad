"""Masked autoencoder (He et al., 2022) around any timm VisionTransformer (ViT/DeiT) encoder.

:class:`MaeVisionTransformer` holds the timm encoder unchanged (so its state dict loads into the plain timm model)
and adds MAE's light decoder: a linear embedding, a mask token, position embeddings, ``decoder_depth`` transformer
blocks, a norm and a linear prediction of every patch's pixels. ``forward(images)`` masks a random
``mask_ratio`` of each sample's patches (:func:`random_masking`), encodes the visible ones, decodes all, and
returns ``(loss, pred, mask)``; the loss is the mean squared error on the masked patches only, against per-patch
normalised pixels (``norm_pix_loss``).

Position embeddings are MAE's fixed 2-D sin-cos tables (``pos_embed="sincos"``, frozen) or learned
(``"learned"``: the encoder's timm embedding, trained, and a learned decoder table). :meth:`set_input_size`
moves encoder and decoder to a new patch grid: fixed tables are rebuilt exactly for the new grid, learned ones
are resampled the way timm resamples ViT position embeddings (bicubic).
"""

from __future__ import annotations

from functools import partial
from typing import Literal

import numpy as np
import torch
from timm.layers import resample_abs_pos_embed
from timm.models.vision_transformer import Block, VisionTransformer
from torch import nn

__all__ = ["MaeVisionTransformer", "random_masking", "patchify", "unpatchify", "sincos_pos_embed_2d",
           "default_decoder", "keep_count"]


def sincos_pos_embed_2d(dim: int, grid: tuple[int, int], prefix_tokens: int = 0) -> torch.Tensor:
    """MAE's fixed 2-D sin-cos table ``[1, prefix_tokens + gh * gw, dim]`` (float32; prefix rows are zeros).

    The first half of each row encodes the patch's column, the second half its row; each half is
    ``[sin(p * w_k), cos(p * w_k)]`` with ``w_k = 10000 ** (-k / (dim / 4))``, computed in float64 as MAE does."""
    if dim % 4:
        raise ValueError(f"a 2-D sin-cos embedding needs a width divisible by 4, got {dim}")
    gh, gw = grid
    omega = 1.0 / 10000 ** (np.arange(dim // 4, dtype=np.float64) / (dim / 4.0))
    cols, rows = np.meshgrid(np.arange(gw, dtype=np.float64), np.arange(gh, dtype=np.float64))

    def one_d(pos: np.ndarray) -> np.ndarray:
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    table = np.concatenate([one_d(cols), one_d(rows)], axis=1)
    table = np.concatenate([np.zeros((prefix_tokens, dim)), table], axis=0)
    return torch.from_numpy(table).float().unsqueeze(0)


def keep_count(num_patches: int, mask_ratio: float) -> int:
    """Visible patches per sample: ``int(L * (1 - ratio))`` as in MAE; at least one patch visible and one masked."""
    keep = int(num_patches * (1 - mask_ratio))
    if not 0 < keep < num_patches:
        raise ValueError(f"mask ratio {mask_ratio} leaves {keep} of {num_patches} patches visible; a {num_patches}-"
                         "patch grid needs at least one visible and one masked patch (change mae.mask_ratio or use "
                         "a finer patch grid)")
    return keep


def random_masking(n: int, num_patches: int, mask_ratio: float, device: torch.device | str = "cpu",
                   generator: torch.Generator | None = None):
    """Per-sample random masking by sorting uniform noise (MAE). Returns ``(ids_keep [n, K], mask [n, L],
    ids_restore [n, L])``: the kept patch indices, 1 for masked patches in the original order, and the permutation
    that takes the shuffled order ``cat(kept, masked)`` back to the original order."""
    keep = keep_count(num_patches, mask_ratio)
    noise = torch.rand(n, num_patches, device=device, generator=generator)
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    mask = torch.ones(n, num_patches, device=device)
    mask[:, :keep] = 0
    return ids_shuffle[:, :keep], torch.gather(mask, 1, ids_restore), ids_restore


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """``[N, C, H, W]`` -> ``[N, L, patch * patch * C]`` in row-major patch order (the order of timm's patch
    tokens); each patch flattened as (row, column, channel)."""
    n, c, h, w = images.shape
    if h % patch or w % patch:
        raise ValueError(f"image {h}x{w} is not a whole number of {patch}-pixel patches")
    x = images.reshape(n, c, h // patch, patch, w // patch, patch)
    return torch.einsum("nchpwq->nhwpqc", x).reshape(n, (h // patch) * (w // patch), patch * patch * c)


def unpatchify(patches: torch.Tensor, patch: int, grid: tuple[int, int], channels: int = 3) -> torch.Tensor:
    """Inverse of :func:`patchify`."""
    n = patches.shape[0]
    gh, gw = grid
    x = patches.reshape(n, gh, gw, patch, patch, channels)
    return torch.einsum("nhwpqc->nchpwq", x).reshape(n, channels, gh * patch, gw * patch)


def default_decoder(embed_dim: int) -> tuple[int, int, int]:
    """``(depth, width, heads)`` of the decoder for an encoder of width ``embed_dim``: MAE's 8 x 512 (16 heads of
    32) for ViT-B and wider, scaled with the width below it (ViT-S 384: 4 x 256, ViT-Ti 192: 2 x 128)."""
    r = min(1.0, embed_dim / 768)
    width = max(16, 16 * round(512 * r / 16))
    return max(1, round(8 * r)), width, max(1, width // 32)


def _check_encoder(encoder: nn.Module) -> None:
    name = type(encoder).__name__
    if not isinstance(encoder, VisionTransformer):
        raise TypeError(f"MAE needs a timm VisionTransformer (ViT/DeiT) encoder, got {name}")
    if encoder.pos_embed is None:
        raise TypeError(f"MAE needs absolute position embeddings; this {name} has none (pos_embed='none')")
    if getattr(encoder, "dynamic_img_size", False):
        raise TypeError("MAE needs a fixed patch grid: build the encoder without dynamic_img_size")
    pe = encoder.patch_embed
    if not getattr(pe, "flatten", False) and str(getattr(pe, "output_fmt", "")) not in ("NLC", "Format.NLC"):
        raise TypeError("MAE needs flat patch tokens [N, L, D] from the patch embedding")


class MaeVisionTransformer(nn.Module):
    """A timm ViT/DeiT ``encoder`` with MAE's masking and decoder (module docstring)."""

    etpp_family = "deit"  # EfficientTrain++'s size list: that of the ViT it wraps (curriculum.etpp_family)

    def __init__(self, encoder: VisionTransformer, *, mask_ratio: float = 0.75, decoder_depth: int | None = None,
                 decoder_dim: int | None = None, decoder_heads: int | None = None, decoder_mlp_ratio: float = 4.0,
                 norm_pix_loss: bool = True, pos_embed: Literal["sincos", "learned"] = "sincos"):
        super().__init__()
        _check_encoder(encoder)
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
        if pos_embed not in ("sincos", "learned"):
            raise ValueError(f"pos_embed must be 'sincos' or 'learned', got {pos_embed!r}")
        self.encoder = encoder
        self.mask_ratio = float(mask_ratio)
        self.norm_pix_loss = norm_pix_loss
        self.fixed_pos_embed = pos_embed == "sincos"
        d_depth, d_dim, d_heads = default_decoder(encoder.embed_dim)
        decoder_depth = decoder_depth or d_depth
        decoder_dim = decoder_dim or d_dim
        decoder_heads = decoder_heads or (d_heads if decoder_dim == d_dim else max(1, decoder_dim // 32))
        if decoder_dim % decoder_heads:
            raise ValueError(f"decoder width {decoder_dim} is not divisible by {decoder_heads} heads")
        if self.fixed_pos_embed and (encoder.embed_dim % 4 or decoder_dim % 4):
            raise ValueError(f"sin-cos position embeddings need widths divisible by 4 (encoder {encoder.embed_dim}, "
                             f"decoder {decoder_dim}); use mae.pos_embed=learned or another width")
        self.patch = int(encoder.patch_embed.patch_size[0])
        if tuple(encoder.patch_embed.patch_size) != (self.patch, self.patch):
            raise TypeError(f"MAE needs square patches, got {tuple(encoder.patch_embed.patch_size)}")
        self.in_chans = int(encoder.patch_embed.proj.in_channels)
        self.num_prefix = int(encoder.num_prefix_tokens)
        # the encoder's pos_embed has rows for the prefix tokens unless no_embed_class (then they get none)
        self.enc_pos_prefix = 0 if encoder.no_embed_class else self.num_prefix

        self.decoder_embed = nn.Linear(encoder.embed_dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, self.num_prefix + self.num_patches, decoder_dim),
                                              requires_grad=not self.fixed_pos_embed)
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.decoder_blocks = nn.Sequential(*[Block(decoder_dim, decoder_heads, decoder_mlp_ratio, qkv_bias=True,
                                                    norm_layer=norm) for _ in range(decoder_depth)])
        self.decoder_norm = norm(decoder_dim)
        self.decoder_pred = nn.Linear(decoder_dim, self.patch * self.patch * self.in_chans)
        self._init_decoder()
        self._freeze_unreached()
        if self.fixed_pos_embed:
            self._set_fixed_pos_embeds()

    # ----- construction

    def _init_decoder(self) -> None:
        # MAE: xavier-uniform linear layers, zero biases, unit LayerNorms, N(0, 0.02) mask token
        torch.nn.init.normal_(self.mask_token, std=0.02)
        if not self.fixed_pos_embed:
            torch.nn.init.trunc_normal_(self.decoder_pos_embed, std=0.02)
        for m in [self.decoder_embed, self.decoder_pred, *self.decoder_blocks.modules(), self.decoder_norm]:
            if isinstance(m, nn.Linear):
                torch.nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _freeze_unreached(self) -> None:
        # parts of the encoder that the reconstruction never reaches (the classifier side: attention pool, fc_norm
        # of average-pool models, a head) stay as initialised; frozen, DDP does not wait for their gradients
        enc = self.encoder
        for part in (getattr(enc, "attn_pool", None), getattr(enc, "fc_norm", None), getattr(enc, "head", None),
                     getattr(enc, "head_dist", None)):
            if part is not None:
                part.requires_grad_(False)

    def _set_fixed_pos_embeds(self) -> None:
        enc = self.encoder
        enc.pos_embed = nn.Parameter(
            sincos_pos_embed_2d(enc.embed_dim, self.grid, self.enc_pos_prefix).to(enc.pos_embed.device),
            requires_grad=False)
        self.decoder_pos_embed = nn.Parameter(
            sincos_pos_embed_2d(self.decoder_pos_embed.shape[-1], self.grid, self.num_prefix).to(
                self.decoder_pos_embed.device), requires_grad=False)

    # ----- sizes (what curriculum.sizes and curriculum.switching read)

    @property
    def patch_embed(self) -> nn.Module:
        """The encoder's patch embedding (its ``img_size`` is the current input size)."""
        return self.encoder.patch_embed

    @property
    def grid(self) -> tuple[int, int]:
        return tuple(int(g) for g in self.encoder.patch_embed.grid_size)

    @property
    def num_patches(self) -> int:
        gh, gw = self.grid
        return gh * gw

    def input_size_rule(self) -> tuple[int, int]:
        """Sizes this model takes: multiples of the patch size, at least one patch (see curriculum.sizes)."""
        return self.patch, self.patch

    @torch.no_grad()
    def set_input_size(self, img_size: tuple[int, int]) -> None:
        """Move encoder and decoder to the patch grid of ``img_size`` (fixed tables rebuilt, learned resampled)."""
        old_grid = self.grid
        self.encoder.set_input_size(img_size=img_size)
        if self.grid == old_grid:
            return
        if self.fixed_pos_embed:
            self._set_fixed_pos_embeds()
        else:
            self.decoder_pos_embed = nn.Parameter(resample_abs_pos_embed(
                self.decoder_pos_embed, new_size=self.grid, old_size=old_grid, num_prefix_tokens=self.num_prefix))

    def no_weight_decay(self) -> set[str]:
        """Tokens and position embeddings take no weight decay (timm's optimizer factory reads this)."""
        inner = {f"encoder.{n}" for n in self.encoder.no_weight_decay()}
        return inner | {"mask_token", "decoder_pos_embed"}

    # ----- forward

    def _prefix_tokens(self, n: int) -> list[torch.Tensor]:
        enc = self.encoder
        tokens = [getattr(enc, name, None) for name in ("cls_token", "dist_token", "reg_token")]
        return [t.expand(n, -1, -1) for t in tokens if t is not None]

    def forward_encoder(self, images: torch.Tensor, ids_keep: torch.Tensor) -> torch.Tensor:
        """The encoder on the kept patches: ``[N, prefix + K, D]`` (timm's token order, prefix tokens first)."""
        enc = self.encoder
        x = enc.patch_embed(images)
        pos = enc.pos_embed
        n, _, d = x.shape
        x = x + pos[:, self.enc_pos_prefix:]
        x = torch.gather(x, 1, ids_keep.unsqueeze(-1).expand(-1, -1, d))
        prefix = self._prefix_tokens(n)
        if prefix:
            prefix = torch.cat(prefix, dim=1)
            if self.enc_pos_prefix:  # timm's original layout: the prefix tokens have position rows too
                prefix = prefix + pos[:, :self.enc_pos_prefix]
            x = torch.cat([prefix, x], dim=1)
        x = enc.norm_pre(enc.pos_drop(x))
        x = enc.blocks(x)
        return enc.norm(x)

    def forward_decoder(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """Pixel predictions for every patch ``[N, L, patch * patch * C]`` from the encoded visible tokens."""
        x = self.decoder_embed(latent)
        n, length = ids_restore.shape
        prefix, visible = x[:, :self.num_prefix], x[:, self.num_prefix:]
        masked = self.mask_token.expand(n, length - visible.shape[1], -1)
        full = torch.cat([visible, masked], dim=1)  # shuffled order; back to the patch order
        full = torch.gather(full, 1, ids_restore.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        x = torch.cat([prefix, full], dim=1) + self.decoder_pos_embed
        x = self.decoder_norm(self.decoder_blocks(x))
        return self.decoder_pred(x)[:, self.num_prefix:]

    def target(self, images: torch.Tensor) -> torch.Tensor:
        """What the decoder predicts: the patches, each normalised by its own mean and variance (norm_pix_loss)."""
        t = patchify(images, self.patch)
        if self.norm_pix_loss:
            mean, var = t.mean(dim=-1, keepdim=True), t.var(dim=-1, keepdim=True)
            t = (t - mean) / (var + 1e-6) ** 0.5
        return t

    def loss(self, images: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean squared error per patch, averaged over the masked patches only."""
        per_patch = (pred.float() - self.target(images.float())).pow(2).mean(dim=-1)
        return (per_patch * mask).sum() / mask.sum()

    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None):
        """``(loss, pred [N, L, p*p*C], mask [N, L])`` with a fresh random mask per sample (``generator``: where the
        mask noise comes from; default the global RNG of the images' device)."""
        grid = (images.shape[-2] // self.patch, images.shape[-1] // self.patch)
        if grid != self.grid or images.shape[-1] % self.patch or images.shape[-2] % self.patch:
            raise ValueError(f"input {tuple(images.shape[-2:])} does not match the model's patch grid {self.grid} "
                             f"of {self.patch}-pixel patches (set_input_size first)")
        ids_keep, mask, ids_restore = random_masking(images.shape[0], self.num_patches, self.mask_ratio,
                                                     images.device, generator)
        pred = self.forward_decoder(self.forward_encoder(images, ids_keep), ids_restore)
        return self.loss(images, pred, mask), pred, mask
