"""In-process size switches with optimizer state and EMA carried (ResNet, ConvNeXt, DeiT, Swin; tiny widths)."""

from __future__ import annotations

import copy

import pytest
import timm
import torch
from timm.layers import resample_abs_pos_embed, resize_rel_pos_bias_table
from timm.utils import ModelEmaV3

from efficienttrain_ext.curriculum import current_input_size, resized_view, switch_input_size

TINY = {
    "resnet10t": {},
    "convnext_atto": dict(dims=(8, 16, 32, 64), depths=(1, 1, 1, 1)),
    "deit_tiny_patch16_224": dict(img_size=64, depth=1, embed_dim=32, num_heads=2),
    "swin_tiny_patch4_window7_224": dict(img_size=64, embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1),
                                         window_size=4),
}


def _make(name):
    torch.manual_seed(0)
    return timm.create_model(name, num_classes=5, **TINY[name])


def _train_steps(model, opt, size, n=2):
    for _ in range(n):
        opt.zero_grad()
        model(torch.randn(2, 3, size, size)).logsumexp(1).mean().backward()
        opt.step()


def _params_in_optimizer(model, opt):
    held = [p for g in opt.param_groups for p in g["params"]]
    ids = {id(p) for p in held}
    return all(id(p) in ids for p in model.parameters()) and len(held) == len(list(model.parameters()))


@pytest.mark.parametrize("name", ["resnet10t", "convnext_atto"])
def test_convnets_switch_is_a_no_op(name):
    model = _make(name)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    _train_steps(model, opt, 64)
    state = {id(p): {k: v.clone() for k, v in opt.state[p].items()} for p in model.parameters()}
    params = list(model.parameters())
    assert switch_input_size(model, 32, opt) == []
    assert list(model.parameters()) == params
    for p in model.parameters():
        for k, v in opt.state[p].items():
            assert torch.equal(v, state[id(p)][k])
    _train_steps(model, opt, 32)  # and it trains at the new size


def test_deit_switch_resamples_pos_embed_state_and_ema():
    model = _make("deit_tiny_patch16_224")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    ema = ModelEmaV3(model, decay=0.5)
    _train_steps(model, opt, 64)
    ema.update(model)
    old = model.pos_embed
    old_state = {k: v.clone() for k, v in opt.state[old].items()}
    old_ema = ema.module.pos_embed.detach().clone()

    replaced = switch_input_size(model, 32, opt, [ema.module])
    assert replaced == ["pos_embed"]
    assert current_input_size(model) == 32 and current_input_size(ema.module) == 32
    new = model.pos_embed
    assert new is not old and new.shape == (1, 1 + 4, 32)
    assert _params_in_optimizer(model, opt)
    assert old not in opt.state

    # independent reference: timm's resampling applied directly to the old moments (4x4 grid -> 2x2, 1 cls token)
    for key in ("exp_avg", "exp_avg_sq"):
        ref = resample_abs_pos_embed(old_state[key], new_size=(2, 2), old_size=(4, 4), num_prefix_tokens=1)
        if key == "exp_avg_sq":
            ref = ref.clamp_min(0)
        torch.testing.assert_close(opt.state[new][key], ref)
    assert int(opt.state[new]["step"]) == int(old_state["step"])
    torch.testing.assert_close(ema.module.pos_embed,
                               resample_abs_pos_embed(old_ema, new_size=(2, 2), old_size=(4, 4), num_prefix_tokens=1))

    # the optimizer updates the new Parameter (a stale optimizer would leave it unchanged)
    before = new.detach().clone()
    _train_steps(model, opt, 32, n=1)
    assert not torch.equal(before, model.pos_embed)
    # and the other parameters kept their state objects
    assert all(p in opt.state for p in model.parameters())


def test_swin_switch_resizes_bias_tables_and_their_state():
    model = _make("swin_tiny_patch4_window7_224")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    _train_steps(model, opt, 64)
    names = [n for n, _ in model.named_parameters() if n.endswith("relative_position_bias_table")]
    old = {n: p for n, p in model.named_parameters() if n in names}
    old_state = {n: {k: v.clone() for k, v in opt.state[p].items()} for n, p in old.items()}
    old_windows = {n: tuple(model.get_submodule(n.rsplit(".", 1)[0]).window_size) for n in names}

    replaced = switch_input_size(model, 32, opt)
    assert sorted(replaced) == sorted(n for n in names if old_windows[n] != (1, 1)) and replaced
    assert _params_in_optimizer(model, opt)
    params = dict(model.named_parameters())
    for n in replaced:
        attn = model.get_submodule(n.rsplit(".", 1)[0])
        new = params[n]
        assert new.shape == ((2 * attn.window_size[0] - 1) * (2 * attn.window_size[1] - 1), attn.num_heads)
        ref = resize_rel_pos_bias_table(old_state[n]["exp_avg"], new_window_size=attn.window_size,
                                        new_bias_shape=tuple(new.shape), old_window_size=old_windows[n])
        torch.testing.assert_close(opt.state[new]["exp_avg"], ref)
        assert (opt.state[new]["exp_avg_sq"] >= 0).all()
    model(torch.randn(2, 3, 32, 32))
    before = {n: params[n].detach().clone() for n in replaced}
    _train_steps(model, opt, 32, n=1)
    assert any(not torch.equal(before[n], dict(model.named_parameters())[n]) for n in replaced)


def test_switch_back_and_forth_keeps_training_and_view_is_a_copy():
    model = _make("deit_tiny_patch16_224")
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    _train_steps(model, opt, 64)
    for size in (48, 64):
        switch_input_size(model, size, opt)
        _train_steps(model, opt, size, n=1)
        assert opt.state[model.pos_embed]["momentum_buffer"].shape == model.pos_embed.shape
    snapshot = copy.deepcopy(model.state_dict())
    view = resized_view(model, 32)
    assert view is not model and current_input_size(view) == 32 and current_input_size(model) == 64
    for k, v in model.state_dict().items():
        assert torch.equal(v, snapshot[k])
    assert resized_view(model, 64) is model


def test_switch_keeps_requires_grad_and_repoints_every_optimizer():
    # timm makes the new pos_embed with requires_grad=True: a frozen one (or an EMA copy) must stay frozen
    model = _make("deit_tiny_patch16_224")
    ema = copy.deepcopy(model).requires_grad_(False)
    model.pos_embed.requires_grad_(False)
    head = torch.optim.SGD(model.head.parameters(), lr=0.1, momentum=0.9)
    rest = torch.optim.AdamW([p for n, p in model.named_parameters() if not n.startswith("head")], lr=1e-3)
    _train_steps(model, head, 64, n=1)
    rest.step()
    blocks = model.blocks[0].attn.qkv.weight
    assert switch_input_size(model, 32, [head, rest], [ema]) == ["pos_embed"]
    assert not model.pos_embed.requires_grad and not any(p.requires_grad for p in ema.parameters())
    assert model.pos_embed in {p for g in rest.param_groups for p in g["params"]}  # re-pointed in the one holding it
    assert blocks is model.blocks[0].attn.qkv.weight and blocks in rest.state
    assert {p for g in head.param_groups for p in g["params"]} == set(model.head.parameters())
