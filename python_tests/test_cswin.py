"""CSWin Transformer (efficienttrain_ext.models.cswin): architecture, official weight layout, sizes, timm APIs.

Big variants are only built on the meta device (parameter counts, FLOPs, state-dict layout); everything that
runs numerically uses tiny configurations, except one CPU forward of CSWin-T at 224 for the FLOP count.
"""

from __future__ import annotations

import copy

import pytest
import timm
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import efficienttrain_ext.models  # noqa: F401  (registers the cswin_* models)
from efficienttrain_ext.models.cswin import CSWinTransformer, LePEAttention, checkpoint_filter_fn

# a small model built through the registered name: 4 stages, two-branch stages 1-3, split (1, 2, 7, 7) default
TINY = dict(embed_dim=16, depth=(1, 1, 2, 1), num_heads=(2, 2, 4, 4))

VARIANTS = {  # name: (embed, depth, heads, split, img, published params (M), published GMACs)
    "cswin_tiny_224": (64, (1, 2, 21, 1), (2, 4, 8, 16), (1, 2, 7, 7), 224, 23, 4.3),
    "cswin_small_224": (64, (2, 4, 32, 2), (2, 4, 8, 16), (1, 2, 7, 7), 224, 35, 6.9),
    "cswin_base_224": (96, (2, 4, 32, 2), (4, 8, 16, 32), (1, 2, 7, 7), 224, 78, 15.0),
    "cswin_large_224": (144, (2, 4, 32, 2), (6, 12, 24, 24), (1, 2, 7, 7), 224, 173, 31.5),
    "cswin_base_384": (96, (2, 4, 32, 2), (4, 8, 16, 32), (1, 2, 12, 12), 384, 78, 47.0),
    "cswin_large_384": (144, (2, 4, 32, 2), (6, 12, 24, 24), (1, 2, 12, 12), 384, 173, 96.8),
}


def tiny(**kw) -> CSWinTransformer:
    args = dict(TINY, img_size=64, num_classes=5)
    args.update(kw)
    return timm.create_model("cswin_tiny_224", **args)


# ---------------------------------------------------------------------------------------------------------------
# An independent model of the official code's layout and computation (tokens (B, L, C), windows cut from
# (B, C, H, W) maps, square inputs, stripe widths dividing the maps), written from the paper and the release.
# ---------------------------------------------------------------------------------------------------------------
def official_layout(embed, depth, heads, split, img, num_classes=1000, in_chans=3) -> dict[str, tuple]:
    """Names and shapes of an official CSWinTransformer state dict."""
    shapes = {"stage1_conv_embed.0.weight": (embed, in_chans, 7, 7), "stage1_conv_embed.0.bias": (embed,),
              "stage1_conv_embed.2.weight": (embed,), "stage1_conv_embed.2.bias": (embed,)}
    for s in range(4):
        d, res = embed * 2 ** s, img // 2 ** (s + 2)
        for i in range(depth[s]):
            p = f"stage{s + 1}.{i}."
            for name, shape in [("qkv.weight", (3 * d, d)), ("qkv.bias", (3 * d,)), ("norm1.weight", (d,)),
                                ("norm1.bias", (d,)), ("proj.weight", (d, d)), ("proj.bias", (d,)),
                                ("norm2.weight", (d,)), ("norm2.bias", (d,)), ("mlp.fc1.weight", (4 * d, d)),
                                ("mlp.fc1.bias", (4 * d,)), ("mlp.fc2.weight", (d, 4 * d)), ("mlp.fc2.bias", (d,))]:
                shapes[p + name] = shape
            single = s == 3 or res == split[s]  # the official block goes single-branch at resolution == split
            for b in range(1 if single else 2):
                c = d if single else d // 2
                shapes[p + f"attns.{b}.get_v.weight"] = (c, 1, 3, 3)
                shapes[p + f"attns.{b}.get_v.bias"] = (c,)
        if s < 3:
            shapes[f"merge{s + 1}.conv.weight"] = (2 * d, d, 3, 3)
            shapes[f"merge{s + 1}.conv.bias"] = (2 * d,)
            shapes[f"merge{s + 1}.norm.weight"] = (2 * d,)
            shapes[f"merge{s + 1}.norm.bias"] = (2 * d,)
    d = embed * 8
    shapes.update({"norm.weight": (d,), "norm.bias": (d,), "head.weight": (num_classes, d),
                   "head.bias": (num_classes,)})
    return shapes


def random_official(shapes: dict[str, tuple], seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, shape in shapes.items():
        t = torch.randn(shape, generator=g) * 0.2
        if k.endswith("weight") and ("norm" in k or k.startswith("stage1_conv_embed.2")):  # LayerNorm scales
            t = 1 + t
        sd[k] = t
    return sd


def _ln(x, sd, p):
    return F.layer_norm(x, x.shape[-1:], sd[p + ".weight"], sd[p + ".bias"])


def _official_branch(q, k, v, res, hs, ws, heads, w, b):
    """q, k, v: (B, L, c) tokens of a res x res map; windows of hs x ws."""
    B, L, c = q.shape
    hd, N = c // heads, hs * ws

    def grid(t):  # (B, L, c) -> (B, c, res/hs, hs, res/ws, ws)
        return t.transpose(1, 2).reshape(B, c, res // hs, hs, res // ws, ws)

    def heads_of(t):  # -> (B', heads, N, hd)
        t = grid(t).permute(0, 2, 4, 3, 5, 1).reshape(-1, N, c)
        return t.reshape(-1, N, heads, hd).permute(0, 2, 1, 3)

    vw = grid(v).permute(0, 2, 4, 1, 3, 5).reshape(-1, c, hs, ws)
    lepe = F.conv2d(vw, w, b, padding=1, groups=c).reshape(-1, heads, hd, N).permute(0, 1, 3, 2)
    qh, kh = heads_of(q), heads_of(k)
    vh = vw.reshape(-1, heads, hd, N).permute(0, 1, 3, 2)
    attn = ((qh * hd ** -0.5) @ kh.transpose(-2, -1)).softmax(-1)
    out = (attn @ vh + lepe).transpose(1, 2).reshape(-1, N, c)
    out = out.reshape(B, res // hs, res // ws, hs, ws, c).permute(0, 1, 3, 2, 4, 5)
    return out.reshape(B, L, c)


def official_forward(sd, embed, depth, heads, split, img, x):
    x = F.conv2d(x, sd["stage1_conv_embed.0.weight"], sd["stage1_conv_embed.0.bias"], stride=4, padding=2)
    x = _ln(x.flatten(2).transpose(1, 2), sd, "stage1_conv_embed.2")
    for s in range(4):
        res = img // 2 ** (s + 2)
        if s:
            B, L, C = x.shape
            m = x.transpose(1, 2).reshape(B, C, 2 * res, 2 * res)
            m = F.conv2d(m, sd[f"merge{s}.conv.weight"], sd[f"merge{s}.conv.bias"], stride=2, padding=1)
            x = _ln(m.flatten(2).transpose(1, 2), sd, f"merge{s}.norm")
        for i in range(depth[s]):
            p = f"stage{s + 1}.{i}."
            B, L, C = x.shape
            qkv = F.linear(_ln(x, sd, p + "norm1"), sd[p + "qkv.weight"], sd[p + "qkv.bias"])
            q, k, v = qkv.reshape(B, L, 3, C).permute(2, 0, 1, 3)
            gv = lambda j: (sd[p + f"attns.{j}.get_v.weight"], sd[p + f"attns.{j}.get_v.bias"])  # noqa: E731
            if s == 3 or res == split[s]:
                y = _official_branch(q, k, v, res, res, res, heads[s], *gv(0))
            else:
                h = C // 2
                y = torch.cat([
                    _official_branch(q[..., :h], k[..., :h], v[..., :h], res, res, split[s], heads[s] // 2, *gv(0)),
                    _official_branch(q[..., h:], k[..., h:], v[..., h:], res, split[s], res, heads[s] // 2, *gv(1)),
                ], dim=-1)
            x = x + F.linear(y, sd[p + "proj.weight"], sd[p + "proj.bias"])
            hmid = F.gelu(F.linear(_ln(x, sd, p + "norm2"), sd[p + "mlp.fc1.weight"], sd[p + "mlp.fc1.bias"]))
            x = x + F.linear(hmid, sd[p + "mlp.fc2.weight"], sd[p + "mlp.fc2.bias"])
    x = _ln(x, sd, "norm").mean(dim=1)
    return F.linear(x, sd["head.weight"], sd["head.bias"])


# ---------------------------------------------------------------------------------------------------------------
def test_registered_and_create_model():
    names = set(timm.list_models("cswin*"))
    assert set(VARIANTS) <= names
    m = tiny(num_classes=10)
    assert isinstance(m, CSWinTransformer)
    assert m(torch.randn(2, 3, 64, 64)).shape == (2, 10)
    assert m.pretrained_cfg["first_conv"] == "stage1_conv_embed.0" and m.pretrained_cfg["classifier"] == "head"
    for name, (embed, depth, heads, split, img, *_) in VARIANTS.items():
        with torch.device("meta"):
            v = timm.create_model(name, num_classes=10)
        assert (v.embed_dim, v.depth, v.num_heads, v.split_size, v.img_size) == (embed, depth, heads, split, (img, img))


@pytest.mark.parametrize("name", list(VARIANTS))
def test_official_state_dict_layout(name):
    """Every variant has exactly the official names and shapes (meta device: nothing allocated)."""
    embed, depth, heads, split, img, *_ = VARIANTS[name]
    with torch.device("meta"):
        model = timm.create_model(name)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == official_layout(embed, depth, heads, split, img)


@pytest.mark.parametrize("split", [(1, 2, 2, 2), (1, 2, 4, 2)], ids=["two-branch", "stage3-single-branch"])
def test_official_weights_load_strict_and_match_official_computation(split):
    """A random official-layout state dict loads with strict=True (after checkpoint_filter_fn) and the model then
    computes what the official code computes. The second case has stage 3 at resolution == stripe width, where the
    official block is single-branch; the filter splits its LePE conv into the two branches."""
    embed, depth, heads, img = 16, (1, 2, 2, 1), (2, 2, 4, 4), 64
    sd = random_official(official_layout(embed, depth, heads, split, img, num_classes=7))
    model = timm.create_model("cswin_tiny_224", embed_dim=embed, depth=depth, num_heads=heads, split_size=split,
                              img_size=img, num_classes=7).eval()
    wrapped = {"state_dict_ema": {"module." + k: v for k, v in sd.items()}}
    model.load_state_dict(checkpoint_filter_fn(wrapped, model), strict=True)
    x = torch.randn(2, 3, img, img, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, ref = model(x), official_forward(sd, embed, depth, heads, split, img, x)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)


def test_pretrained_file_through_timm(tmp_path):
    """The path our trainer uses (pretrained=True with a file overlay): EMA weights picked, head dropped when
    num_classes differs, everything else loaded."""
    embed, depth, heads, split, img = 16, (1, 1, 2, 1), (2, 2, 4, 4), (1, 2, 7, 7), 64
    sd = random_official(official_layout(embed, depth, heads, split, img))
    path = tmp_path / "cswin_official.pth"
    torch.save({"state_dict": {k: torch.zeros_like(v) for k, v in sd.items()}, "state_dict_ema": sd}, path)
    model = timm.create_model("cswin_tiny_224", pretrained=True, pretrained_cfg_overlay={"file": str(path)},
                              num_classes=3, **TINY, img_size=img)
    got = model.state_dict()
    for k, v in sd.items():
        if not k.startswith("head."):
            assert torch.equal(got[k], v), k
    assert got["head.weight"].shape == (3, embed * 8)


# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["vertical", "horizontal"])
def test_partial_stripes_are_padded_and_masked(mode):
    """A stripe that does not fit the map gives exactly the unpadded result for the whole stripes, and the partial
    stripe equals attention (and LePE) over its real tokens only."""
    torch.manual_seed(0)
    attn = LePEAttention(dim=8, num_heads=2, mode=mode, split_size=7, fused_attn=False).eval()
    B, C = 2, 8
    H, W = (6, 10) if mode == "vertical" else (10, 6)
    q, k, v = (torch.randn(B, H, W, C) for _ in range(3))
    with torch.no_grad():
        y = attn(q, k, v)
        assert torch.isfinite(y).all() and y.shape == (B, H, W, C)
        if mode == "vertical":
            whole = attn(q[:, :, :7], k[:, :, :7], v[:, :, :7])  # 7 columns: tiles exactly, no padding
            part_attn = copy.deepcopy(attn)
            part_attn.split_size = 3
            part = part_attn(q[:, :, 7:], k[:, :, 7:], v[:, :, 7:])
            torch.testing.assert_close(y[:, :, :7], whole)
            torch.testing.assert_close(y[:, :, 7:], part)
        else:
            whole = attn(q[:, :7], k[:, :7], v[:, :7])
            part_attn = copy.deepcopy(attn)
            part_attn.split_size = 3
            part = part_attn(q[:, 7:], k[:, 7:], v[:, 7:])
            torch.testing.assert_close(y[:, :7], whole)
            torch.testing.assert_close(y[:, 7:], part)


def test_fused_and_explicit_attention_agree():
    attn = LePEAttention(dim=8, num_heads=2, mode="vertical", split_size=3)
    q, k, v = (torch.randn(4, 2, 12, 4) for _ in range(3))
    mask = torch.ones(4, 1, 1, 12, dtype=torch.bool)
    mask[:, ..., 9:] = False
    torch.testing.assert_close(attn._attend(q, k, v, mask, fused=True), attn._attend(q, k, v, mask, fused=False))
    torch.testing.assert_close(attn._attend(q, k, v, None, fused=True), attn._attend(q, k, v, None, fused=False))


# ---------------------------------------------------------------------------------------------------------------
def _train_step(model, opt, size, gen):
    x = torch.randn(4, 3, size, size, generator=gen)
    y = torch.randint(0, 5, (4,), generator=gen)
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert torch.isfinite(loss) and all(g is not None and torch.isfinite(g).all() for g in grads)
    opt.step()
    return loss.item()


def test_curriculum_size_switch_keeps_parameters():
    """Train at 64 (stage-3 map 4x4 < stripe 7: padded), switch to 128 (8x8: padded to 14), train again. The
    Parameters are the very same objects with their trained values, so the optimizer state carries over as is."""
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = tiny(drop_path_rate=0.1).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    assert model.input_size_rule() == (32, 32)
    assert model.patch_embed.img_size == (64, 64) and model.patch_embed.patch_size == (4, 4)
    assert [f["reduction"] for f in model.feature_info] == [4, 8, 16, 32]
    _train_step(model, opt, 64, gen)
    before = {n: (p, p.detach().clone()) for n, p in model.named_parameters()}
    state_before = {n: opt.state[p]["exp_avg"].clone() for n, (p, _) in before.items()}

    model.set_input_size(img_size=(128, 128))
    assert model.patch_embed.img_size == (128, 128)
    assert model.stage_sizes() == [(32, 32), (16, 16), (8, 8), (4, 4)]
    for n, p in model.named_parameters():
        assert p is before[n][0] and torch.equal(p, before[n][1]), n
        assert torch.equal(opt.state[p]["exp_avg"], state_before[n])
    _train_step(model, opt, 128, gen)
    assert all(opt.state[p]["step"] == 2 for p in model.parameters())
    with pytest.raises(ValueError, match="64x64"):
        model(torch.randn(1, 3, 64, 64))


def test_size_rule_code_reads_cswin():
    """efficienttrain_ext.resize sees the model as a set_input_size model with step 32, nothing replaced."""
    resize = pytest.importorskip("efficienttrain_ext.resize")
    model = tiny()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    ema = copy.deepcopy(model)
    assert resize.current_input_size(model) == 64
    rule = resize.size_rule_for_model(model)
    assert (rule.step, rule.min_size) == model.input_size_rule()
    assert resize.switch_input_size(model, 96, optimizer=opt, emas=[ema]) == []
    assert resize.current_input_size(model) == 96 and resize.current_input_size(ema) == 96
    with torch.no_grad():
        assert torch.isfinite(model(torch.randn(1, 3, 96, 96))).all()


def test_set_input_size_split_size():
    model = tiny(img_size=64).eval()
    model.set_input_size(img_size=96, split_size=(1, 2, 3, 3))
    assert model.split_size == (1, 2, 3, 3) and model.img_size == (96, 96)
    assert {a.split_size for a in model.stage3[0].attns} == {3} and model.stage4[0].attns[0].mode == "full"
    with torch.no_grad():
        assert torch.isfinite(model(torch.randn(1, 3, 96, 96))).all()


def test_bad_inputs_give_clear_errors():
    model = tiny().eval()
    with pytest.raises(ValueError, match=r"set up for 64x64 inputs, got 96x96.*set_input_size"):
        model(torch.randn(1, 3, 96, 96))
    with pytest.raises(ValueError, match="expects"):
        model(torch.randn(1, 1, 64, 64))
    with pytest.raises(ValueError, match="expects"):
        model(torch.randn(3, 64, 64))
    for bad in (100, (64, 80), 0, 16):
        with pytest.raises(ValueError, match="multiple of 32"):
            model.set_input_size(img_size=bad)
    assert model.img_size == (64, 64)  # unchanged after the failed calls
    with pytest.raises(ValueError, match="multiple of 32"):
        tiny(img_size=100)
    with pytest.raises(ValueError, match="split_size"):
        model.set_input_size(split_size=(0, 2, 7))
    # any size when built dynamic (detection), non-square too
    dyn = tiny(dynamic_img_size=True).eval()
    with torch.no_grad():
        assert torch.isfinite(dyn(torch.randn(1, 3, 100, 132))).all()
    with pytest.raises(ValueError, match="at least"):
        dyn(torch.randn(1, 3, 2, 64))


def test_deterministic_outputs():
    torch.manual_seed(3)
    a = tiny().eval()
    torch.manual_seed(3)
    b = tiny().eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ya = a(x)
        assert torch.equal(ya, a(x)) and torch.equal(ya, b(x))
    a.train()  # no drop_path, no dropout: train mode is deterministic too
    with torch.no_grad():
        assert torch.equal(a(x), ya)


def test_drop_path():
    model = tiny(drop_path_rate=0.5)
    rates = [getattr(b.drop_path, "drop_prob", 0.0) for s in (model.stage1, model.stage2, model.stage3,
                                                              model.stage4) for b in s]
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.5) and rates == sorted(rates)
    x = torch.randn(4, 3, 64, 64)
    torch.manual_seed(0)
    model.train()
    with torch.no_grad():
        y1, y2 = model(x), model(x)
    assert not torch.allclose(y1, y2)  # stochastic depth in training
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


def test_gradients_reach_lepe_convs():
    model = tiny().train()
    loss = model(torch.randn(2, 3, 64, 64)).square().mean()
    loss.backward()
    lepe = {n: p for n, p in model.named_parameters() if ".get_v." in n}
    assert len(lepe) == 2 * (2 * 4 + 1)  # 4 two-branch blocks + 1 single-branch block, weight + bias each
    for n, p in lepe.items():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, n


def test_grad_checkpointing_same_result():
    torch.manual_seed(0)
    model = tiny().train()
    x = torch.randn(2, 3, 64, 64)
    model(x).sum().backward()
    ref = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model.set_grad_checkpointing(True)
    model(x).sum().backward()
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, ref[n], rtol=1e-5, atol=1e-6)


def test_timm_api():
    model = tiny()
    x = torch.randn(2, 3, 64, 64)
    feats = model.forward_features(x)
    assert feats.shape == (2, 2, 2, 128)  # channels-last, final-norm
    assert model.forward_head(feats, pre_logits=True).shape == (2, 128)
    model.reset_classifier(0)
    assert model(x).shape == (2, 128)
    model.reset_classifier(4)
    assert model(x).shape == (2, 4)
    from timm.optim import create_optimizer_v2

    opt = create_optimizer_v2(model, "adamw", lr=1e-3, weight_decay=0.05, layer_decay=0.8)
    assert len(opt.param_groups) > 2


# ---------------------------------------------------------------------------------------------------------------
def test_features_only():
    f = timm.create_model("cswin_tiny_224", features_only=True, out_indices=(1, 2, 3), **TINY, img_size=64)
    assert f.feature_info.reduction() == [8, 16, 32] and f.feature_info.channels() == [32, 64, 128]
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        outs = f(x)
    assert [tuple(o.shape) for o in outs] == [(2, 32, 8, 8), (2, 64, 4, 4), (2, 128, 2, 2)]  # NCHW
    # same tensors as the classification model's forward_intermediates, and the keys are the model's keys
    model = tiny().eval()
    missing, unexpected = model.load_state_dict(f.state_dict(), strict=False)
    assert not unexpected and sorted(missing) == ["head.bias", "head.weight", "norm.bias", "norm.weight"]
    with torch.no_grad():
        inter = model.forward_intermediates(x, indices=(1, 2, 3), intermediates_only=True)
    for a, b in zip(outs, inter):
        torch.testing.assert_close(a, b)
    # the timm 1.0 getter wrapper works as well
    g = timm.create_model("cswin_tiny_224", features_only=True, out_indices=(1, 2, 3), feature_cls="getter",
                          **TINY, img_size=64)
    g.load_state_dict({"model." + k: v for k, v in f.state_dict().items()}, strict=False)
    with torch.no_grad():
        for a, b in zip(outs, g(x)):
            torch.testing.assert_close(a, b)


def test_features_only_full_tiny_and_dynamic_sizes():
    with torch.device("meta"):
        f = timm.create_model("cswin_tiny_224", features_only=True, out_indices=(1, 2, 3))
        outs = f(torch.empty(1, 3, 224, 224))
    assert f.feature_info.reduction() == [8, 16, 32] and f.feature_info.channels() == [128, 256, 512]
    assert [tuple(o.shape) for o in outs] == [(1, 128, 28, 28), (1, 256, 14, 14), (1, 512, 7, 7)]
    # detection (TimmBackbone passes dynamic_img_size=True for *swin* names): any padded size
    d = timm.create_model("cswin_tiny_224", features_only=True, out_indices=(1, 2, 3), dynamic_img_size=True, **TINY)
    with torch.no_grad():
        outs = d(torch.randn(1, 3, 96, 160))
    assert [tuple(o.shape[-2:]) for o in outs] == [(12, 20), (6, 10), (3, 5)]


# ---------------------------------------------------------------------------------------------------------------
def _gmacs(model, size) -> float:
    device = next(model.parameters()).device
    x = torch.empty(1, 3, size, size, device=device)
    if device.type != "meta":
        x.normal_()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x)
    return counter.get_total_flops() / 2 / 1e9  # FlopCounterMode counts a multiply-add as 2 FLOPs


def test_flops_tiny_224_matches_published():
    model = timm.create_model("cswin_tiny_224").eval()  # a real CPU forward, counted with FlopCounterMode
    gmacs = _gmacs(model, 224)
    assert gmacs == pytest.approx(4.3, rel=0.03), gmacs  # published 4.3 GMACs (= 8.6 GFLOPs)


# the published CSWin-L figures are ~5% below what its layers compute (its linear layers alone are 31.2 GMACs
# at 224 against the published 31.5 total), while the parameter count matches: tolerance 6% for L
@pytest.mark.parametrize("name", list(VARIANTS))
def test_params_and_flops_vs_published(name):
    *_, img, params_m, gmacs_pub = VARIANTS[name]
    with torch.device("meta"):
        model = timm.create_model(name)
        gmacs = _gmacs(model, img)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    assert params == pytest.approx(params_m, rel=0.04), params  # T: 22.3M (published "23M")
    assert gmacs == pytest.approx(gmacs_pub, rel=0.06 if "large" in name else 0.03), gmacs
