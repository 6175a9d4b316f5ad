"""CSWin Transformer (Dong et al., CVPR 2022, arXiv:2107.00652) as timm models.

Registered names: ``cswin_tiny_224``, ``cswin_small_224``, ``cswin_base_224``, ``cswin_large_224``,
``cswin_base_384``, ``cswin_large_384`` (``timm.create_model`` after ``import efficienttrain_ext.models``).

Architecture (as the official release, microsoft/CSWin-Transformer ``models/cswin.py``):

* stem ``stage1_conv_embed``: 7x7 stride-4 conv (padding 2) + LayerNorm;
* 4 stages ``stage1`` .. ``stage4`` of :class:`CSWinBlock` s, joined by ``merge1`` .. ``merge3`` (3x3 stride-2
  conv + LayerNorm, channels doubled);
* a block: pre-norm cross-shaped window attention (``qkv`` -> two branches -> ``proj``) and a ratio-4 GELU MLP,
  each residual with drop_path. Branch ``attns.0`` takes the first half of the q/k/v channels and half the heads
  and attends within vertical stripes (full height, ``split_size`` wide); ``attns.1`` takes the second half and
  attends within horizontal stripes. The last stage has a single full-attention branch. Every branch adds
  LePE, a depthwise 3x3 conv (``get_v``) on V applied per stripe window, to its attention output;
* final LayerNorm ``norm``, global average pool, linear ``head``.

Parameter names and shapes are those of the official state dicts, see :func:`checkpoint_filter_fn`.

Input sizes (see :meth:`CSWinTransformer.input_size_rule`): no weight depends on the input size. A stripe that
does not fit the feature map (e.g. width 7 on the 10x10 stage-3 map at 160 px) is completed by zero padding at
the right/bottom of the map; the padded keys are masked out of the softmax and the padded outputs dropped, so a
partial stripe attends exactly over its real tokens (and its LePE conv sees zeros past its edge, as at every
stripe border), while whole stripes compute exactly what the unpadded official code computes.
:meth:`CSWinTransformer.set_input_size` therefore only changes the expected size (and optionally the stripe
widths); all Parameters stay the same objects.
"""

from __future__ import annotations

from typing import Callable, Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import DropPath, Mlp, get_norm_layer, to_2tuple, trunc_normal_, use_fused_attn
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices

__all__ = ["CSWinTransformer", "CSWinBlock", "LePEAttention", "checkpoint_filter_fn"]

PATCH_SIZE = 4  # stride of the stem
MAX_REDUCTION = 32  # stride of the last stage
STRIPE_MODES = ("vertical", "horizontal", "full")


def _stripe_windows(x: torch.Tensor, hs: int, ws: int) -> torch.Tensor:
    """(B, H, W, C) with H % hs == W % ws == 0 -> (B * H/hs * W/ws, hs * ws, C), windows row-major."""
    B, H, W, C = x.shape
    x = x.reshape(B, H // hs, hs, W // ws, ws, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, hs * ws, C)


def _merge_windows(x: torch.Tensor, hs: int, ws: int, B: int, H: int, W: int) -> torch.Tensor:
    """Inverse of :func:`_stripe_windows`: (B * nW, hs * ws, C) -> (B, H, W, C)."""
    C = x.shape[-1]
    x = x.reshape(B, H // hs, W // ws, hs, ws, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(B, H, W, C)


class LePEAttention(nn.Module):
    """One branch of cross-shaped window self-attention, with locally-enhanced positional encoding.

    ``mode``: ``vertical`` (windows of full height and ``split_size`` columns; the official ``idx=0``),
    ``horizontal`` (``split_size`` rows of full width; ``idx=1``) or ``full`` (the whole map; ``idx=-1``).
    Inputs q, k, v are channels-last (B, H, W, dim) maps; heads take contiguous chunks of ``dim // num_heads``.
    """

    def __init__(self, dim: int, num_heads: int, mode: str, split_size: int | None = None, attn_drop: float = 0.0,
                 qk_scale: float | None = None, fused_attn: bool | None = None):
        super().__init__()
        if mode not in STRIPE_MODES:
            raise ValueError(f"mode must be one of {STRIPE_MODES}, got {mode!r}")
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        if mode != "full" and (split_size is None or split_size < 1):
            raise ValueError(f"a {mode} branch needs a stripe width split_size >= 1, got {split_size}")
        self.dim = dim
        self.num_heads = num_heads
        self.mode = mode
        self.split_size = split_size if mode != "full" else None
        self.head_dim = dim // num_heads
        self.scale = qk_scale or self.head_dim ** -0.5
        self.attn_drop_p = attn_drop
        self.attn_drop = nn.Dropout(attn_drop)
        # SDPA is used off-CPU only: on CPU the explicit product keeps FlopCounterMode counting the attention
        # (torch registers no FLOP formula for the CPU flash kernel) and costs little at these window sizes
        self.fused_attn = use_fused_attn() if fused_attn is None else bool(fused_attn)
        self.get_v = nn.Conv2d(dim, dim, kernel_size=3, stride=1, padding=1, groups=dim)

    def window_shape(self, H: int, W: int) -> tuple[int, int]:
        """(rows, columns) of one window for an H x W map (the stripe may exceed the map: it is then padded)."""
        if self.mode == "vertical":
            return H, self.split_size
        if self.mode == "horizontal":
            return self.split_size, W
        return H, W

    def _attend(self, q, k, v, mask: torch.Tensor | None, fused: bool) -> torch.Tensor:
        """q, k, v: (B', heads, N, head_dim); mask: (B', 1, 1, N) bool, True for real tokens, or None."""
        if fused:
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scale,
                                                  dropout_p=self.attn_drop_p if self.training else 0.0)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        if mask is not None:
            attn = attn.masked_fill(~mask, float("-inf"))
        attn = attn.softmax(dim=-1)
        attn = self.attn_drop(attn)
        return attn @ v

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        B, H, W, C = q.shape
        hs, ws = self.window_shape(H, W)
        pad_h, pad_w = -H % hs, -W % ws
        Hp, Wp = H + pad_h, W + pad_w
        mask = None
        if pad_h or pad_w:  # zeros at the bottom/right; padded keys are masked below
            q, k, v = (F.pad(t, (0, 0, 0, pad_w, 0, pad_h)) for t in (q, k, v))
            real = torch.zeros(Hp, Wp, dtype=torch.bool, device=q.device)
            real[:H, :W] = True
            real = _stripe_windows(real[None, :, :, None], hs, ws)  # (nW, N, 1)
            mask = real.transpose(1, 2).unsqueeze(0).expand(B, -1, -1, -1).reshape(-1, 1, 1, hs * ws)

        N, nh, hd = hs * ws, self.num_heads, self.head_dim
        q, k, v = (_stripe_windows(t, hs, ws) for t in (q, k, v))  # (B', N, C)
        # LePE: depthwise conv on V inside each window (zero padding at window borders)
        lepe = self.get_v(v.reshape(-1, hs, ws, C).permute(0, 3, 1, 2))  # (B', C, hs, ws)
        lepe = lepe.reshape(-1, nh, hd, N).transpose(-2, -1)
        q, k, v = (t.reshape(-1, N, nh, hd).transpose(1, 2) for t in (q, k, v))  # (B', heads, N, hd)

        x = self._attend(q, k, v, mask, fused=self.fused_attn and q.device.type != "cpu") + lepe
        x = _merge_windows(x.transpose(1, 2).reshape(-1, N, C), hs, ws, B, Hp, Wp)
        return x[:, :H, :W] if (pad_h or pad_w) else x

    def extra_repr(self) -> str:
        sw = f", split_size={self.split_size}" if self.split_size else ""
        return f"dim={self.dim}, num_heads={self.num_heads}, mode={self.mode}{sw}"


class CSWinBlock(nn.Module):
    """x + drop_path(proj(CSWin-attention(norm1(x)))), then x + drop_path(mlp(norm2(x))); channels-last."""

    def __init__(self, dim: int, num_heads: int, split_size: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 qk_scale: float | None = None, drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.0,
                 act_layer: Callable[..., nn.Module] = nn.GELU, norm_layer: Callable[..., nn.Module] = nn.LayerNorm,
                 last_stage: bool = False, fused_attn: bool | None = None):
        super().__init__()
        self.dim = dim
        self.num_heads = num_heads
        self.norm1 = norm_layer(dim)
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        common = dict(attn_drop=attn_drop, qk_scale=qk_scale, fused_attn=fused_attn)
        if last_stage:
            self.attns = nn.ModuleList([LePEAttention(dim, num_heads, "full", **common)])
        else:
            if dim % 2 or num_heads % 2:
                raise ValueError(f"a two-branch block needs an even dim and head count, got {dim} and {num_heads}")
            self.attns = nn.ModuleList([
                LePEAttention(dim // 2, num_heads // 2, mode, split_size, **common)
                for mode in ("vertical", "horizontal")])
        # the official block defines a dropout after proj but never applies it; neither do we
        self.proj = nn.Linear(dim, dim)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=act_layer, drop=drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        C = x.shape[-1]
        q, k, v = self.qkv(self.norm1(x)).chunk(3, dim=-1)
        if len(self.attns) == 1:
            y = self.attns[0](q, k, v)
        else:
            h = C // 2
            y = torch.cat([self.attns[0](q[..., :h], k[..., :h], v[..., :h]),
                           self.attns[1](q[..., h:], k[..., h:], v[..., h:])], dim=-1)
        x = x + self.drop_path(self.proj(y))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class _ChannelsLast(nn.Module):
    """NCHW -> NHWC (a view); stands where the official stem has its parameter-free ``Rearrange``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1)


class ConvStem(nn.ModuleList):
    """``stage1_conv_embed``: [7x7/4 conv, channels-last, LayerNorm]; NCHW in and out.

    Holds what timm's ``PatchEmbed`` holds for size handling (``img_size``, ``patch_size``, ``strict_img_size``)
    and checks the input.
    """

    def __init__(self, in_chans: int, embed_dim: int, img_size: tuple[int, int], strict_img_size: bool,
                 norm_layer: Callable[..., nn.Module]):
        super().__init__([nn.Conv2d(in_chans, embed_dim, kernel_size=7, stride=PATCH_SIZE, padding=2),
                          _ChannelsLast(), norm_layer(embed_dim)])
        self.in_chans = in_chans
        self.img_size = img_size
        self.patch_size = (PATCH_SIZE, PATCH_SIZE)
        self.strict_img_size = strict_img_size

    @property
    def grid_size(self) -> tuple[int, int]:
        return tuple((s - 3) // PATCH_SIZE + 1 for s in self.img_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_chans:
            raise ValueError(f"CSWin expects (batch, {self.in_chans}, height, width) images, got shape "
                             f"{tuple(x.shape)}")
        H, W = x.shape[-2:]
        if self.strict_img_size and (H, W) != tuple(self.img_size):
            h, w = self.img_size
            raise ValueError(f"CSWin is set up for {h}x{w} inputs, got {H}x{W}: call "
                             f"model.set_input_size(img_size=({H}, {W})) first (sizes must be multiples of "
                             f"{MAX_REDUCTION}), or build the model with dynamic_img_size=True")
        if H < PATCH_SIZE or W < PATCH_SIZE:
            raise ValueError(f"CSWin needs inputs of at least {PATCH_SIZE}x{PATCH_SIZE}, got {H}x{W}")
        x = self[2](self[1](self[0](x)))
        return x.permute(0, 3, 1, 2)


class CSWinStage(nn.ModuleList):
    """The blocks of one stage (official keys ``stageN.<i>.*``); NCHW in and out, channels-last inside."""

    def __init__(self, blocks: Iterable[nn.Module] = ()):
        super().__init__(blocks)
        self.grad_checkpointing = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        for blk in self:
            if self.grad_checkpointing and torch.is_grad_enabled() and not torch.jit.is_scripting():
                x = checkpoint(blk, x, use_reentrant=False)
            else:
                x = blk(x)
        return x.permute(0, 3, 1, 2)


class MergeBlock(nn.Module):
    """``mergeN``: 3x3 stride-2 conv (padding 1) + LayerNorm; NCHW in and out."""

    def __init__(self, dim: int, dim_out: int, norm_layer: Callable[..., nn.Module] = nn.LayerNorm):
        super().__init__()
        self.conv = nn.Conv2d(dim, dim_out, kernel_size=3, stride=2, padding=1)
        self.norm = norm_layer(dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class CSWinTransformer(nn.Module):
    """CSWin Transformer.

    Args:
        img_size: input size the model expects (int or (H, W)); multiples of 32, see :meth:`input_size_rule`.
        in_chans, num_classes, global_pool (``avg`` or ``''``): as in timm.
        embed_dim: stage-1 width (doubled by every merge).
        depth, num_heads: per stage (4 stages).
        split_size: stripe width per stage; stage 4 is full attention and ignores its entry (kept for the
            configuration's sake, as in the official code).
        mlp_ratio, qkv_bias, qk_scale: block options (official defaults 4, True, None = head_dim^-0.5).
        drop_rate: dropout inside the MLPs (the official meaning of ``drop_rate``); attn_drop_rate: on attention
            weights; drop_path_rate: stochastic depth, linear in the block index from 0 to this value.
        strict_img_size: require inputs of exactly ``img_size`` (a clear error otherwise).
        dynamic_img_size: accept any input size (>= 4 px); implies ``strict_img_size=False``.
        fused_attn: use ``F.scaled_dot_product_attention`` off-CPU (None: timm's global setting).
    """

    def __init__(
            self,
            img_size: int | Sequence[int] = 224,
            in_chans: int = 3,
            num_classes: int = 1000,
            global_pool: str = "avg",
            embed_dim: int = 64,
            depth: Sequence[int] = (1, 2, 21, 1),
            num_heads: Sequence[int] = (2, 4, 8, 16),
            split_size: Sequence[int] = (1, 2, 7, 7),
            mlp_ratio: float = 4.0,
            qkv_bias: bool = True,
            qk_scale: float | None = None,
            drop_rate: float = 0.0,
            attn_drop_rate: float = 0.0,
            drop_path_rate: float = 0.0,
            norm_layer: str | Callable[..., nn.Module] = nn.LayerNorm,
            act_layer: Callable[..., nn.Module] = nn.GELU,
            strict_img_size: bool = True,
            dynamic_img_size: bool = False,
            fused_attn: bool | None = None,
    ):
        super().__init__()
        depth, num_heads = tuple(int(d) for d in depth), tuple(int(h) for h in num_heads)
        split_size = self._check_split(split_size)
        if len(depth) != 4 or len(num_heads) != 4:
            raise ValueError(f"CSWin has 4 stages: depth and num_heads need 4 entries, got {depth}, {num_heads}")
        if global_pool not in ("avg", ""):
            raise ValueError(f"global_pool must be 'avg' or '', got {global_pool!r}")
        norm_layer = get_norm_layer(norm_layer) if isinstance(norm_layer, str) else norm_layer
        img_size = self._check_img_size(img_size)

        self.num_classes = num_classes
        self.global_pool = global_pool
        self.embed_dim = embed_dim
        self.depth = depth
        self.num_heads = num_heads
        self.split_size = split_size
        self.dynamic_img_size = bool(dynamic_img_size or not strict_img_size)
        self.grad_checkpointing = False
        dims = [embed_dim * 2 ** i for i in range(4)]
        self.num_features = self.head_hidden_size = dims[-1]

        # registration order = execution order (timm's FeatureListNet relies on it)
        self.stage1_conv_embed = ConvStem(in_chans, embed_dim, img_size, not self.dynamic_img_size, norm_layer)
        n_blocks = sum(depth)  # stochastic depth: linear from 0 to drop_path_rate (plain floats: meta-device safe)
        dpr = [drop_path_rate * j / (n_blocks - 1) if n_blocks > 1 else 0.0 for j in range(n_blocks)]
        self.feature_info = []
        for i in range(4):
            if i > 0:
                setattr(self, f"merge{i}", MergeBlock(dims[i - 1], dims[i], norm_layer))
            first = sum(depth[:i])
            stage = CSWinStage(
                CSWinBlock(dims[i], num_heads[i], split_size[i], mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
                           qk_scale=qk_scale, drop=drop_rate, attn_drop=attn_drop_rate, drop_path=dpr[first + j],
                           act_layer=act_layer, norm_layer=norm_layer, last_stage=i == 3, fused_attn=fused_attn)
                for j in range(depth[i]))
            setattr(self, f"stage{i + 1}", stage)
            self.feature_info.append(dict(num_chs=dims[i], reduction=PATCH_SIZE * 2 ** i, module=f"stage{i + 1}"))
        self.norm = norm_layer(dims[-1])
        self.head = nn.Linear(dims[-1], num_classes) if num_classes > 0 else nn.Identity()
        self.apply(self._init_weights)

    # ------------------------------------------------------------------ construction helpers
    @staticmethod
    def _init_weights(m: nn.Module) -> None:  # as the official code: convs keep PyTorch's default init
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    @staticmethod
    def _check_split(split_size: Sequence[int]) -> tuple[int, int, int, int]:
        split = tuple(int(s) for s in split_size)
        if len(split) == 3:
            split = split + (split[-1],)
        if len(split) != 4 or min(split[:3]) < 1:
            raise ValueError(f"split_size needs 3 or 4 positive stripe widths (one per stage), got {split_size}")
        return split

    @staticmethod
    def _check_img_size(img_size: int | Sequence[int]) -> tuple[int, int]:
        size = tuple(int(s) for s in to_2tuple(img_size))
        step, min_size = CSWinTransformer.input_size_rule()
        if len(size) != 2 or any(s < min_size or s % step for s in size):
            raise ValueError(f"CSWin input size must be a multiple of {step} and at least {min_size} on each side "
                             f"(got {img_size}); for any other size build with dynamic_img_size=True")
        return size

    # ------------------------------------------------------------------ input size
    @staticmethod
    def input_size_rule() -> tuple[int, int]:
        """(step, min_size): ``set_input_size`` / ``img_size`` take multiples of ``step`` >= ``min_size``.

        32 = stem stride 4 x three stride-2 merges, so every stage map is exactly H/4, H/8, H/16, H/32. Stripe
        widths need not divide the maps (partial stripes are padded and masked). Matches
        ``efficienttrain_ext.resize.size_rule_for_model`` (largest ``feature_info`` reduction).
        """
        return MAX_REDUCTION, MAX_REDUCTION

    @property
    def patch_embed(self) -> ConvStem:
        """The stem, under the name timm's size tooling looks for (``img_size``, ``patch_size``)."""
        return self.stage1_conv_embed

    @property
    def img_size(self) -> tuple[int, int]:
        return self.stage1_conv_embed.img_size

    def set_input_size(self, img_size: int | Sequence[int] | None = None,
                       split_size: Sequence[int] | None = None) -> None:
        """Expect ``img_size`` inputs from now on (and optionally use other stripe widths, e.g. the 384 models'
        (1, 2, 12, 12)). No weight depends on either, so every Parameter stays the same object with the same
        values; optimizer state and EMA copies stay valid without any resampling."""
        if img_size is not None:
            self.stage1_conv_embed.img_size = self._check_img_size(img_size)
        if split_size is not None:
            split = self._check_split(split_size)
            for i in range(3):
                for blk in getattr(self, f"stage{i + 1}"):
                    for attn in blk.attns:
                        attn.split_size = split[i]
            self.split_size = split

    def stage_sizes(self, img_size: int | Sequence[int] | None = None) -> list[tuple[int, int]]:
        """Feature-map sizes of the 4 stages for an input size (default: the current ``img_size``)."""
        h, w = to_2tuple(img_size) if img_size is not None else self.img_size
        h, w = (h - 3) // PATCH_SIZE + 1, (w - 3) // PATCH_SIZE + 1
        sizes = [(h, w)]
        for _ in range(3):
            h, w = (h + 1) // 2, (w + 1) // 2
            sizes.append((h, w))
        return sizes

    # ------------------------------------------------------------------ timm API
    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return set()

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return dict(
            stem=r"^stage1_conv_embed",
            blocks=r"^stage(\d+)" if coarse else [
                (r"^stage(\d+)\.(\d+)", None),
                (r"^merge(\d+)", (99999,)),  # timm's MATCH_PREV_GROUP: merge i joins the last block of stage i
                (r"^norm", (99999,)),
            ],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable
        for i in range(4):
            getattr(self, f"stage{i + 1}").grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        if global_pool is not None:
            if global_pool not in ("avg", ""):
                raise ValueError(f"global_pool must be 'avg' or '', got {global_pool!r}")
            self.global_pool = global_pool
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        if num_classes > 0:
            self._init_weights(self.head)

    def _stages(self) -> list[tuple[nn.Module | None, CSWinStage]]:
        return [(getattr(self, f"merge{i}", None) if i else None, getattr(self, f"stage{i + 1}")) for i in range(4)]

    def forward_intermediates(self, x: torch.Tensor, indices: int | Sequence[int] | None = None,
                              norm: bool = False, stop_early: bool = False, output_fmt: str = "NCHW",
                              intermediates_only: bool = False):
        """timm 1.0 feature API: stage outputs (strides 4/8/16/32) at ``indices``; ``norm`` applies the final
        LayerNorm to the stage-4 output."""
        if output_fmt not in ("NCHW", "NHWC"):
            raise ValueError(f"output_fmt must be NCHW or NHWC, got {output_fmt!r}")
        take_indices, max_index = feature_take_indices(4, indices)
        intermediates = []
        x = self.stage1_conv_embed(x)
        last = max_index if stop_early else 3
        for i, (merge, stage) in enumerate(self._stages()[: last + 1]):
            if merge is not None:
                x = merge(x)
            x = stage(x)
            if i in take_indices:
                y = self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2) if norm and i == 3 else x
                intermediates.append(y.permute(0, 2, 3, 1) if output_fmt == "NHWC" else y)
        if intermediates_only:
            return intermediates
        return self.norm(x.permute(0, 2, 3, 1)), intermediates

    def prune_intermediate_layers(self, indices: int | Sequence[int] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> list[int]:
        take_indices, max_index = feature_take_indices(4, indices)
        for i in range(max_index + 1, 4):
            setattr(self, f"merge{i}", nn.Identity())
            setattr(self, f"stage{i + 1}", CSWinStage())
        if prune_norm:
            self.norm = nn.Identity()
        if prune_head:
            self.reset_classifier(0, "")
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Final-norm features, channels-last (B, H/32, W/32, C)."""
        x = self.stage1_conv_embed(x)
        for merge, stage in self._stages():
            if merge is not None:
                x = merge(x)
            x = stage(x)
        return self.norm(x.permute(0, 2, 3, 1))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.global_pool == "avg":
            x = x.mean(dim=(1, 2))
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# ---------------------------------------------------------------------- official weights
def _unwrap_checkpoint(state_dict: Mapping) -> Mapping:
    for key in ("state_dict_ema", "model_ema", "state_dict", "model"):
        inner = state_dict.get(key) if isinstance(state_dict, Mapping) else None
        if isinstance(inner, Mapping) and inner:
            return inner
    return state_dict


def checkpoint_filter_fn(state_dict: Mapping[str, torch.Tensor], model: CSWinTransformer) -> dict:
    """Official CSWin checkpoint -> this model's state dict.

    The names already agree (``stage1_conv_embed.{0,2}``, ``stageN.i.{norm1,qkv,attns.K.get_v,proj,norm2,mlp}``,
    ``mergeN.{conv,norm}``, ``norm``, ``head``). This only unwraps ``state_dict_ema`` (preferred, like timm's
    loader) / ``state_dict`` / ``model``, strips ``module.`` and handles one structural corner: the official
    block turns single-branch whenever its stage resolution equals its stripe width (none of the released models
    has such a stage below stage 4). Such a block's ``attns.0.get_v`` covers all channels; it is split into the two
    half-width branches here, which at that resolution compute the same function.
    """
    sd = dict(_unwrap_checkpoint(state_dict))
    sd = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in sd.items()}
    for s in range(1, 4):
        stage = getattr(model, f"stage{s}", ())
        for i, blk in enumerate(stage):
            key = f"stage{s}.{i}.attns.0.get_v"
            w = sd.get(f"{key}.weight")
            if w is None or f"stage{s}.{i}.attns.1.get_v.weight" in sd or len(blk.attns) != 2:
                continue
            if w.shape[0] != blk.dim:
                continue
            for part in ("weight", "bias"):
                t = sd.pop(f"{key}.{part}", None)
                if t is not None:
                    sd[f"stage{s}.{i}.attns.0.get_v.{part}"], sd[f"stage{s}.{i}.attns.1.get_v.{part}"] = t.chunk(2)
    return sd


# ---------------------------------------------------------------------- registration
def _create_cswin(variant: str, pretrained: bool = False, **kwargs) -> CSWinTransformer:
    out_indices = kwargs.pop("out_indices", (0, 1, 2, 3))
    return build_model_with_cfg(
        CSWinTransformer, variant, pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(flatten_sequential=True, out_indices=out_indices),
        **kwargs,
    )


_RELEASE = "https://github.com/microsoft/CSWin-Transformer/releases/download/v0.1.0/"


def _cfg(url: str = "", **kwargs) -> dict:
    return {
        "url": url, "num_classes": 1000, "input_size": (3, 224, 224), "pool_size": (7, 7), "crop_pct": 0.9,
        "interpolation": "bicubic", "fixed_input_size": True, "mean": IMAGENET_DEFAULT_MEAN,
        "std": IMAGENET_DEFAULT_STD, "first_conv": "stage1_conv_embed.0", "classifier": "head",
        "license": "mit", "paper_ids": "arXiv:2107.00652",
        "paper_name": "CSWin Transformer: A General Vision Transformer Backbone with Cross-Shaped Windows",
        "origin_url": "https://github.com/microsoft/CSWin-Transformer", **kwargs,
    }


default_cfgs = generate_default_cfgs({
    "cswin_tiny_224.ms_in1k": _cfg(_RELEASE + "cswin_tiny_224.pth"),
    "cswin_small_224.ms_in1k": _cfg(_RELEASE + "cswin_small_224.pth"),
    "cswin_base_224.ms_in1k": _cfg(_RELEASE + "cswin_base_224.pth"),
    "cswin_large_224.ms_in22k_ft_in1k": _cfg(_RELEASE + "cswin_large_224.pth"),
    "cswin_base_384.ms_in1k": _cfg(_RELEASE + "cswin_base_384.pth", input_size=(3, 384, 384),
                                   pool_size=(12, 12), crop_pct=1.0),
    "cswin_large_384.ms_in22k_ft_in1k": _cfg(_RELEASE + "cswin_large_384.pth", input_size=(3, 384, 384),
                                             pool_size=(12, 12), crop_pct=1.0),
})

_TINY = dict(embed_dim=64, depth=(1, 2, 21, 1), num_heads=(2, 4, 8, 16))
_SMALL = dict(embed_dim=64, depth=(2, 4, 32, 2), num_heads=(2, 4, 8, 16))
_BASE = dict(embed_dim=96, depth=(2, 4, 32, 2), num_heads=(4, 8, 16, 32))
_LARGE = dict(embed_dim=144, depth=(2, 4, 32, 2), num_heads=(6, 12, 24, 24))
_SPLIT_224 = dict(img_size=224, split_size=(1, 2, 7, 7))
_SPLIT_384 = dict(img_size=384, split_size=(1, 2, 12, 12))


@register_model
def cswin_tiny_224(pretrained: bool = False, **kwargs) -> CSWinTransformer:
    """CSWin-T: 23M params, 4.3 GMACs at 224."""
    return _create_cswin("cswin_tiny_224", pretrained, **{**_TINY, **_SPLIT_224, **kwargs})


@register_model
def cswin_small_224(pretrained: bool = False, **kwargs) -> CSWinTransformer:
    """CSWin-S: 35M params, 6.9 GMACs at 224."""
    return _create_cswin("cswin_small_224", pretrained, **{**_SMALL, **_SPLIT_224, **kwargs})


@register_model
def cswin_base_224(pretrained: bool = False, **kwargs) -> CSWinTransformer:
    """CSWin-B: 78M params, 15.0 GMACs at 224."""
    return _create_cswin("cswin_base_224", pretrained, **{**_BASE, **_SPLIT_224, **kwargs})


@register_model
def cswin_large_224(pretrained: bool = False, **kwargs) -> CSWinTransformer:
    """CSWin-L: 173M params, 31.5 GMACs at 224."""
    return _create_cswin("cswin_large_224", pretrained, **{**_LARGE, **_SPLIT_224, **kwargs})


@register_model
def cswin_base_384(pretrained: bool = False, **kwargs) -> CSWinTransformer:
    """CSWin-B at 384 (stripes 1, 2, 12, 12): 78M params, 47.0 GMACs."""
    return _create_cswin("cswin_base_384", pretrained, **{**_BASE, **_SPLIT_384, **kwargs})


@register_model
def cswin_large_384(pretrained: bool = False, **kwargs) -> CSWinTransformer:
    """CSWin-L at 384 (stripes 1, 2, 12, 12): 173M params, 96.8 GMACs."""
    return _create_cswin("cswin_large_384", pretrained, **{**_LARGE, **_SPLIT_384, **kwargs})
