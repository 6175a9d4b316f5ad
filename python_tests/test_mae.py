"""MAE pre-training (``etrain mae``): masking, the masked-patch loss, position embeddings through size switches, the
driver run (metrics, encoder checkpoint that timm loads, reconstruction figure), exact resume inside a cropped
stage, DDP, and bad input."""

from __future__ import annotations

import os

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from timm.layers import resample_abs_pos_embed

from efficienttrain_ext import cli
from efficienttrain_ext.config import load_config
from efficienttrain_ext.curriculum import plan, size_rule_for_model
from efficienttrain_ext.curriculum.sizes import current_input_size
from efficienttrain_ext.curriculum.switching import switch_input_size
from efficienttrain_ext.engine import trainer as trainer_mod
from efficienttrain_ext.engine.checkpoint import load as load_checkpoint
from efficienttrain_ext.engine.mae import MAE_DEFAULTS, MaeTask
from efficienttrain_ext.models.mae import (MaeVisionTransformer, default_decoder, keep_count, patchify,
                                           random_masking, unpatchify)

from _etrain_helpers import FMNIST, TINY_VIT, assert_same_run, metrics, run_torchrun, tiny_args

needs_fmnist = pytest.mark.skipif(not os.path.isdir(FMNIST), reason="dataset-fashion-mnist is not installed")


def mae_args(out, name, *extra, **kw):
    kw.setdefault("model", TINY_VIT)
    kw.setdefault("size", 64)
    return ["mae", *tiny_args(out, name, *extra, **kw)[1:]]


def tiny_mae(pos_embed="sincos", size=64, **kw):
    enc = timm.create_model("deit_tiny_patch16_224", num_classes=0, depth=1, embed_dim=32, num_heads=2,
                            img_size=size)
    return MaeVisionTransformer(enc, pos_embed=pos_embed, **kw)


def mae_sincos_reference(dim, grid_size, cls_token=True):
    """MAE's get_2d_sincos_pos_embed (models/util/pos_embed.py of facebookresearch/mae), square grids."""
    grid_h = np.arange(grid_size, dtype=np.float32)
    grid_w = np.arange(grid_size, dtype=np.float32)
    grid = np.meshgrid(grid_w, grid_h)  # here w goes first
    grid = np.stack(grid, axis=0).reshape([2, 1, grid_size, grid_size])

    def one_d(d, pos):
        omega = np.arange(d // 2, dtype=np.float64) / (d / 2.0)
        omega = 1.0 / 10000 ** omega
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    emb = np.concatenate([one_d(dim // 2, grid[0]), one_d(dim // 2, grid[1])], axis=1)
    if cls_token:
        emb = np.concatenate([np.zeros([1, dim]), emb], axis=0)
    return torch.from_numpy(emb).float().unsqueeze(0)


# ----- masking

def test_masking_counts_differs_per_sample_reproducible_and_restores():
    n, length, ratio = 64, 49, 0.75
    keep = int(length * (1 - ratio))
    ids_keep, mask, ids_restore = random_masking(n, length, ratio, generator=torch.Generator().manual_seed(0))
    assert ids_keep.shape == (n, keep) and mask.shape == (n, length)
    assert torch.equal(mask.sum(1), torch.full((n,), float(length - keep)))  # exact count per sample
    assert set(mask.unique().tolist()) == {0.0, 1.0}
    for i in range(n):  # the kept patches are exactly the unmasked ones
        assert torch.equal(mask[i, ids_keep[i]], torch.zeros(keep))
        assert len(set(ids_keep[i].tolist())) == keep
    assert len({tuple(m.tolist()) for m in mask}) == n  # a different mask for every sample
    again = random_masking(n, length, ratio, generator=torch.Generator().manual_seed(0))
    other = random_masking(n, length, ratio, generator=torch.Generator().manual_seed(1))
    assert all(torch.equal(a, b) for a, b in zip((ids_keep, mask, ids_restore), again))
    assert not torch.equal(mask, other[1])
    # ids_restore takes the shuffled order (kept first, then masked) back to the original order
    tokens = torch.arange(length).expand(n, -1)
    masked_ids = torch.stack([torch.tensor([j for j in range(length) if mask[i, j] == 1]) for i in range(n)])
    shuffled = torch.argsort(ids_restore, dim=1)  # the shuffle that ids_restore undoes
    assert torch.equal(shuffled[:, :keep], ids_keep)
    assert torch.equal(torch.sort(shuffled[:, keep:], dim=1).values, masked_ids)
    assert torch.equal(torch.gather(torch.gather(tokens, 1, shuffled), 1, ids_restore), tokens)
    # the global RNG is the default source (what exact resume restores)
    torch.manual_seed(5)
    a = random_masking(4, length, ratio)[1]
    torch.manual_seed(5)
    assert torch.equal(a, random_masking(4, length, ratio)[1])


def test_keep_count_and_bad_ratios():
    assert keep_count(196, 0.75) == 49 and keep_count(36, 0.75) == 9 and keep_count(9, 0.75) == 2
    with pytest.raises(ValueError, match="at least one visible and one masked"):
        keep_count(4, 0.9)  # int(0.4) = 0 visible
    for bad in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match=r"mask_ratio must be in \(0, 1\)"):
            tiny_mae(mask_ratio=bad)


# ----- patches and the loss

def test_patchify_matches_unfold_and_inverts():
    x = torch.randn(2, 3, 32, 48)
    p = 8
    ref = F.unfold(x, kernel_size=p, stride=p)  # [N, C*p*p, L]: (c, row, col) per patch, row-major patches
    ref = ref.reshape(2, 3, p, p, -1).permute(0, 4, 2, 3, 1).reshape(2, -1, p * p * 3)
    assert torch.equal(patchify(x, p), ref)
    assert torch.equal(unpatchify(patchify(x, p), p, (4, 6)), x)
    with pytest.raises(ValueError, match="whole number"):
        patchify(torch.randn(1, 3, 30, 32), 8)


@pytest.mark.parametrize("norm_pix", [True, False])
def test_loss_only_sees_masked_patches(norm_pix):
    torch.manual_seed(0)
    m = tiny_mae(norm_pix_loss=norm_pix, size=64)
    x = torch.randn(3, 3, 64, 64)
    _, mask, _ = random_masking(3, 16, 0.75, generator=torch.Generator().manual_seed(3))
    pred = torch.randn(3, 16, 16 * 16 * 3)
    loss = m.loss(x, pred, mask)
    # independent reference: loop over patches, normalise each with its own mean / unbiased variance
    total, count = 0.0, 0
    for i in range(3):
        for k in range(16):
            if mask[i, k] == 0:
                continue
            r, c = divmod(k, 4)
            t = x[i, :, 16 * r:16 * r + 16, 16 * c:16 * c + 16].permute(1, 2, 0).reshape(-1).double()
            if norm_pix:
                t = (t - t.mean()) / (t.var() + 1e-6).sqrt()
            total += float(((pred[i, k].double() - t) ** 2).mean())
            count += 1
    assert float(loss) == pytest.approx(total / count, rel=1e-5)
    visible = [(i, k) for i in range(3) for k in range(16) if mask[i, k] == 0]
    hidden = [(i, k) for i in range(3) for k in range(16) if mask[i, k] == 1]
    for (i, k), changes in ((visible[0], False), (visible[-1], False), (hidden[0], True)):
        y = x.clone()
        r, c = divmod(k, 4)
        y[i, :, 16 * r:16 * r + 16, 16 * c:16 * c + 16] = torch.randn(3, 16, 16) * 5 + 2
        assert (float(m.loss(y, pred, mask)) != float(loss)) == changes, (i, k)


def test_forward_gradients_reach_every_trainable_parameter():
    torch.manual_seed(0)
    m = tiny_mae()
    loss, pred, mask = m(torch.randn(2, 3, 64, 64))
    loss.backward()
    assert pred.shape == (2, 16, 16 * 16 * 3) and mask.shape == (2, 16)
    assert all(p.grad is not None for n, p in m.named_parameters() if p.requires_grad)  # DDP needs all of them
    frozen = {n for n, p in m.named_parameters() if not p.requires_grad}
    assert frozen == {"encoder.pos_embed", "decoder_pos_embed"}  # MAE's fixed tables
    # the visible tokens the encoder sees: 4 of 16 patches + the class token
    latent = m.forward_encoder(torch.randn(2, 3, 64, 64), random_masking(2, 16, 0.75)[0])
    assert latent.shape == (2, 1 + 4, 32)


def test_decoder_defaults_follow_mae():
    assert default_decoder(768) == (8, 512, 16) and default_decoder(1024) == (8, 512, 16)  # ViT-B / ViT-L
    assert default_decoder(384) == (4, 256, 8) and default_decoder(192) == (2, 128, 4)
    m = tiny_mae(decoder_depth=3, decoder_dim=48, decoder_heads=4)
    assert len(m.decoder_blocks) == 3 and m.decoder_embed.out_features == 48
    assert m.decoder_blocks[0].attn.num_heads == 4
    with pytest.raises(ValueError, match="not divisible by"):
        tiny_mae(decoder_dim=48, decoder_heads=5)


# ----- sizes and position embeddings

def test_size_switch_gives_exact_sincos_tables_and_resampled_learned_ones():
    torch.manual_seed(0)
    m = tiny_mae(size=64)
    ema = tiny_mae(size=64)
    assert current_input_size(m) == 64 and m.input_size_rule() == (16, 16)
    rule = size_rule_for_model(m)
    assert (rule.step, rule.min_size) == (16, 16)
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-3)
    m(torch.randn(2, 3, 64, 64))[0].backward()
    opt.step()
    for size in (48, 96, 64):
        replaced = switch_input_size(m, size, opt, [ema])
        g = size // 16
        assert current_input_size(m) == size and m.grid == (g, g)
        for model in (m, ema):
            assert torch.equal(model.encoder.pos_embed, mae_sincos_reference(32, g))
            assert torch.equal(model.decoder_pos_embed, mae_sincos_reference(16, g))
            assert not model.encoder.pos_embed.requires_grad and not model.decoder_pos_embed.requires_grad
        assert set(replaced) == {"encoder.pos_embed", "decoder_pos_embed"}
        assert all(p.requires_grad for group in opt.param_groups for p in group["params"])
        loss = m(torch.randn(2, 3, size, size))[0]
        loss.backward()
        opt.step()

    learned = tiny_mae(pos_embed="learned", size=64)
    enc_before, dec_before = learned.encoder.pos_embed.detach().clone(), learned.decoder_pos_embed.detach().clone()
    opt = torch.optim.AdamW(learned.parameters(), lr=1e-3)
    learned(torch.randn(2, 3, 64, 64))[0].backward()
    opt.step()
    enc_before, dec_before = learned.encoder.pos_embed.detach().clone(), learned.decoder_pos_embed.detach().clone()
    switch_input_size(learned, 96, opt)
    assert torch.allclose(learned.encoder.pos_embed, resample_abs_pos_embed(enc_before, (6, 6), (4, 4),
                                                                            num_prefix_tokens=1))
    assert torch.allclose(learned.decoder_pos_embed, resample_abs_pos_embed(dec_before, (6, 6), (4, 4),
                                                                            num_prefix_tokens=1))
    assert learned.encoder.pos_embed.requires_grad and learned.decoder_pos_embed.requires_grad
    in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
    assert id(learned.decoder_pos_embed) in in_opt and id(learned.encoder.pos_embed) in in_opt
    assert opt.state[learned.decoder_pos_embed]["exp_avg"].shape == (1, 37, 16)  # moments resampled along


def test_curricula_treat_the_wrapper_as_a_vit():
    m = tiny_mae(size=64)
    assert [s.size for s in plan("efficienttrain", epochs=3, final_size=64, model=m).stages] == [48, 64]
    etpp = plan("efficienttrain++", epochs=4, final_size=64, model=m)
    ref = plan("efficienttrain++", epochs=4, final_size=64, model=timm.create_model("deit_tiny_patch16_224"))
    assert [s.size for s in etpp.stages] == [s.size for s in ref.stages]  # the DeiT size list


def test_eval_masks_repeat_each_evaluation_and_leave_the_training_rng_alone():
    torch.manual_seed(0)
    m = tiny_mae().eval()
    task = MaeTask()
    x = torch.randn(4, 3, 64, 64)
    state = torch.get_rng_state()
    first = [task.eval_sums(m, x, None) for _ in range(2)]
    task.eval_metrics(sum(first))
    second = [task.eval_sums(m, x, None) for _ in range(2)]
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    assert not torch.equal(first[0], first[1])  # the batches of one evaluation get different masks


# ----- the driver

@needs_fmnist
def test_mae_run_writes_metrics_encoder_and_reconstructions(tmp_path, capsys):
    assert cli.main(mae_args(tmp_path, "m", "--curriculum", "efficienttrain", epochs=3, subset=32, val=16)) == 0
    out = capsys.readouterr().out
    run = tmp_path / "m"
    rows = metrics(run)
    assert [r["size"] for r in rows] == [48, 48, 64]
    assert all(r["val_loss"] > 0 and "top1" not in r for r in rows)
    assert "val_loss_at_B" in rows[0] and "val_loss_at_B" not in rows[2]
    assert "no RandAugment" in out and "final: val_loss" in out
    cfg = load_config(str(run / "config.yaml"))
    assert cfg.aug.randaugment is None and cfg.aug.mixup == 0 and cfg.aug.reprob == 0 and cfg.aug.smoothing == 0
    assert cfg.optim.betas == [0.9, 0.95] and cfg.data.scale == [0.2, 1.0] and not cfg.train.ema
    ck = load_checkpoint(run)
    assert ck["input_size"] == 64 and torch.equal(ck["model"]["decoder_pos_embed"], mae_sincos_reference(16, 4))
    # encoder.pth is the plain timm model's state dict: strict load, and through timm's pretrained-file path
    sd = torch.load(run / "encoder.pth", weights_only=True)
    plain = timm.create_model("deit_tiny_patch16_224", num_classes=0, depth=1, embed_dim=32, num_heads=2, img_size=64)
    plain.load_state_dict(sd, strict=True)
    via_timm = timm.create_model("deit_tiny_patch16_224", num_classes=0, depth=1, embed_dim=32, num_heads=2,
                                 img_size=64, pretrained=True, pretrained_cfg_overlay={"file": str(run / "encoder.pth")})
    for k, v in ck["model"].items():
        if k.startswith("encoder."):
            assert torch.equal(v, sd[k.removeprefix("encoder.")]) and torch.equal(v, via_timm.state_dict()[
                k.removeprefix("encoder.")]), k
    with open(run / "reconstruction.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert cli.main(["plot", str(run), "-o", str(tmp_path / "plots")]) == 0
    assert "val_loss" in capsys.readouterr().out


class _Crash(Exception):
    pass


@needs_fmnist
def test_exact_resume_inside_a_cropped_stage(tmp_path, monkeypatch):
    # 4 epochs at final 64: epochs 1-3 at B = 48, epoch 4 at 64; the crash comes right after epoch 2's checkpoint
    args = dict(epochs=4, subset=32, val=16, batch=8)
    extra = ["--curriculum", "efficienttrain", "--set", "train.ema=true", "--set", "mae.vis_images=0"]
    assert cli.main(mae_args(tmp_path, "full", *extra, **args)) == 0

    save = trainer_mod.Trainer._save

    def crash_after_epoch_2(self, name, epoch, stage):
        save(self, name, epoch, stage)
        if name == "last.pt" and epoch == 2:
            raise _Crash

    monkeypatch.setattr(trainer_mod.Trainer, "_save", crash_after_epoch_2)
    with pytest.raises(_Crash):
        cli.main(mae_args(tmp_path, "crashed", *extra, **args))
    monkeypatch.setattr(trainer_mod.Trainer, "_save", save)
    ck = load_checkpoint(tmp_path / "crashed")
    assert ck["epoch"] == 2 and ck["input_size"] == 48  # inside the cropped stage
    assert cli.main(["mae", "--resume", str(tmp_path / "crashed")]) == 0

    assert [r["size"] for r in metrics(tmp_path / "crashed")] == [48, 48, 48, 64]
    assert_same_run(tmp_path / "full", tmp_path / "crashed", 4)
    for f in ("encoder.pth", "encoder_ema.pth"):
        a, b = (torch.load(tmp_path / r / f, weights_only=True) for r in ("full", "crashed"))
        assert all(torch.equal(v, b[k]) for k, v in a.items())


@needs_fmnist
def test_mae_under_torchrun_ddp(tmp_path):
    args = mae_args(tmp_path, "ddp", "--curriculum", "efficienttrain", "--device", "cpu", "--set",
                    "mae.vis_images=2", epochs=3, subset=32, val=10, batch=8)
    run_torchrun(args)
    rows = metrics(tmp_path / "ddp")
    assert [r["size"] for r in rows] == [48, 48, 64] and all(r["train_images"] == 32 for r in rows)
    ck = load_checkpoint(tmp_path / "ddp")
    assert ck["world_size"] == 2 and ck["model"]["encoder.pos_embed"].shape == (1, 17, 32)
    assert (tmp_path / "ddp" / "encoder.pth").exists() and (tmp_path / "ddp" / "reconstruction.png").exists()


def test_bad_input(tmp_path, capsys):
    def fails(args, message):
        assert cli.main(args) == 2
        err = capsys.readouterr().err
        assert message in err, err

    base = mae_args(tmp_path, "bad", epochs=1, subset=16, val=16)
    fails(mae_args(tmp_path, "bad", epochs=1, subset=16, val=16, model=("--model", "resnet10t")), "etrain mae needs a timm ViT/DeiT (VisionTransformer) encoder; "
                                           "resnet10t is a ResNet")
    for ratio in ("0", "1", "1.5", "-0.2"):
        fails([*base, "--mask-ratio", ratio], "mae.mask_ratio: Input should be")
    fails([*base, "--set", "mae.decoder_dim=48", "--set", "mae.decoder_heads=5"], "not divisible by")
    fails([*base, "--set", "mae.pos_embed=rope"], "mae.pos_embed: Input should be 'sincos' or 'learned'")
    fails([*base, "--set", "optim.betas=[0.9]"], "optim.betas: must be [beta1, beta2]")
    # a 32-pixel grid of 16-pixel patches has 4 patches: 90% masking leaves none visible
    fails([*base, "--final-size", "32", "--curriculum", "none", "--mask-ratio", "0.9"],
          "needs at least one visible and one masked patch")


def test_mae_defaults_are_valid_and_layered_under_the_config_file(tmp_path):
    cfg = load_config(None, base=MAE_DEFAULTS)
    assert cfg.model.name == "vit_base_patch16_224" and cfg.aug.randaugment is None and cfg.mae.mask_ratio == 0.75
    f = tmp_path / "c.yaml"
    f.write_text("aug:\n  mixup: 0.5\nmae:\n  mask_ratio: 0.6\n")
    cfg = load_config(str(f), ["mae.norm_pix_loss=false"], base=MAE_DEFAULTS)
    assert cfg.aug.mixup == 0.5 and cfg.aug.cutmix == 0.0 and cfg.mae.mask_ratio == 0.6 and not cfg.mae.norm_pix_loss
