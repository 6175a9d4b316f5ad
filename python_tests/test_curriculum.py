"""Curriculum values against the papers' tables, rounding rules, YAML schedules, FLOP counting, `etrain schedule`."""

from __future__ import annotations


import pytest
import timm
import torch
from torch import nn

from efficienttrain_ext import cli
from efficienttrain_ext.curriculum import (
    ScheduleError,
    SizeRule,
    build_schedule,
    efficienttrain,
    efficienttrain_pp,
    etpp_family,
    schedule_from_yaml,
)
from efficienttrain_ext.curriculum.flops import train_flops_per_image
from efficienttrain_ext.curriculum import size_rule_for_model


def _one_based(schedule):
    """(first epoch, last epoch, size) per stage, 1-based inclusive as the paper writes them."""
    return [(s.start + 1, s.end, s.size) for s in schedule.stages]


# EfficientTrain Table 5 (300 epochs) and its linear scaling to 100 / 200 epochs.
@pytest.mark.parametrize("epochs, expected", [
    (300, [(1, 180, 160), (181, 240, 192), (241, 300, 224)]),
    (200, [(1, 120, 160), (121, 160, 192), (161, 200, 224)]),
    (100, [(1, 60, 160), (61, 80, 192), (81, 100, 224)]),
])
def test_efficienttrain_table5(epochs, expected):
    s = efficienttrain(epochs, 224, SizeRule(step=32))
    assert _one_based(s) == expected
    assert s.magnitude == "linear" and s.m0 == 9


def test_efficienttrain_final_384_table8c():
    # v >= 224: B = 160, (160 + v) / 2, v  ->  160, 272, 384
    s = efficienttrain(300, 384, SizeRule(step=16))
    assert [st.size for st in s.stages] == [160, 272, 384]
    # a Swin (sizes multiple of 32) cannot take 272: nearest multiple, ties up -> 288
    assert [st.size for st in efficienttrain(300, 384, SizeRule(step=32)).stages] == [160, 288, 384]


def test_efficienttrain_small_final_size_is_proportional():
    s = efficienttrain(10, 112, SizeRule(step=1))
    assert [st.size for st in s.stages] == [80, 96, 112]  # 112 * 160/224, 112 * 192/224
    s = efficienttrain(10, 64, SizeRule(step=2))
    assert [st.size for st in s.stages] == [46, 54, 64]  # 45.7 -> 46, 54.9 -> 54


def test_magnitude_is_linear_per_step():
    s = efficienttrain(10, 224, SizeRule(step=32))
    total = 10 * 7
    for step in (0, 1, 35, 69, 70):
        assert s.magnitude_at(step / total) == pytest.approx(9.0 * step / total)


@pytest.mark.parametrize("family, ref", [
    ("cnn", [96] * 2 + [160] * 4 + [224] * 4),
    ("convnext", [160] * 6 + [224] * 4),
    ("deit", [96] * 2 + [160] * 4 + [192] * 2 + [224] * 2),
])
def test_efficienttrain_pp_lists_and_equal_compute(family, ref):
    budget = 300
    s = efficienttrain_pp(budget, 224, SizeRule(step=16), family=family)
    # one stage per list entry, m = stage index
    assert [st.size for st in s.stages] == ref
    assert [st.magnitude for st in s.stages] == list(range(10))
    for k, st in enumerate(s.stages):
        assert s.magnitude_at(st.start / s.epochs) == k
    # a stage at B runs (224/B)^2 times the budget/10 epochs it stands for (up to integer epochs)
    for st in s.stages:
        assert abs(st.epochs - budget / 10 * (224 / st.size) ** 2) <= 1.0
    # so every stage costs the same pixels and the run about as much as the 300-epoch baseline
    assert s.baseline == budget
    assert s.relative_pixels() == pytest.approx(1.0, abs=0.01)


def test_etpp_family_detection():
    assert etpp_family("deit_small_patch16_224") == "deit"
    assert etpp_family("convnext_tiny") == "convnext"
    assert etpp_family("resnet50") == "cnn"
    assert etpp_family("swin_tiny_patch4_window7_224") == "cnn"

    class Wrapper(nn.Module):  # a wrapper whose class name says nothing states its family
        etpp_family = "deit"

    assert etpp_family(Wrapper()) == "deit"
    Wrapper.etpp_family = "vit"
    with pytest.raises(ScheduleError, match="Wrapper.etpp_family is 'vit'; choose from"):
        etpp_family(Wrapper())


def test_progressive_ramp_and_baseline():
    s = build_schedule("progressive", 10, 224, SizeRule(step=32))
    sizes = [s.size_at(e) for e in range(10)]
    assert sizes[0] == 160 and sizes[-1] == 224
    assert sizes == sorted(sizes)
    assert all(x % 32 == 0 for x in sizes)
    # last 20% at the final size
    assert sizes[8:] == [224, 224]
    b = build_schedule("none", 10, 224)
    assert [(st.start, st.end, st.size) for st in b.stages] == [(0, 10, 224)]
    assert b.magnitude_at(0.0) == b.magnitude_at(0.99) == 9.0
    assert b.relative_pixels() == 1.0


def test_rounding_rules():
    r = SizeRule(step=32, min_size=32)
    assert [r.round(x) for x in (45.7, 48, 79.9, 80, 96.1)] == [32, 64, 64, 96, 96]
    with pytest.raises(ScheduleError, match="not a multiple"):
        r.check(40)
    with pytest.raises(ScheduleError, match="minimum"):
        SizeRule(step=16, min_size=16).check(0)
    fixed = SizeRule(fixed=224)
    assert fixed.round(160) == 224
    with pytest.raises(ScheduleError, match="only takes 224"):
        fixed.check(160)


def test_model_size_rules():
    deit = timm.create_model("deit_tiny_patch16_224", num_classes=10, depth=1, embed_dim=32, num_heads=2)
    swin = timm.create_model("swin_tiny_patch4_window7_224", num_classes=10, embed_dim=16, depths=(1, 1, 1, 1),
                             num_heads=(1, 1, 1, 1))
    resnet = timm.create_model("resnet10t", num_classes=10)
    assert size_rule_for_model(deit).step == 16  # patch size
    assert size_rule_for_model(swin).step == 32  # patch 4 x 2^3 stage downsampling
    assert size_rule_for_model(resnet).step == 2
    assert size_rule_for_model(resnet, multiple=32).step == 32
    # ViT at final 64: 45.7 -> 48, 54.9 -> 48 (merged into one stage), 64
    s = efficienttrain(10, 64, size_rule_for_model(deit))
    assert [(st.start, st.end, st.size) for st in s.stages] == [(0, 8, 48), (8, 10, 64)]
    with pytest.raises(ScheduleError, match="multiple of 16"):
        efficienttrain(10, 72, size_rule_for_model(deit))


def test_yaml_schedule(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("name: mine\nmagnitude: stage\nstages:\n"
                 "  - {epochs: 3, size: 100, magnitude: 2}\n  - {epochs: 7, scale: 1.0, magnitude: 7}\n")
    s = schedule_from_yaml(str(p), 10, 128, SizeRule(step=32))
    assert s.name == "mine"
    assert [(st.start, st.end, st.size, st.magnitude) for st in s.stages] == [(0, 3, 96, 2.0), (3, 10, 128, 7.0)]
    assert s.magnitude_at(0.0) == 2.0 and s.magnitude_at(0.9) == 7.0
    # built through the generic entry point too
    assert build_schedule(str(p), 10, 128, SizeRule(step=32)) == s
    bad = tmp_path / "bad.yaml"
    bad.write_text("stages:\n  - {epochs: 3, size: 100}\n")
    with pytest.raises(ScheduleError, match="sum to 3"):
        schedule_from_yaml(str(bad), 10, 128)
    bad.write_text("stages:\n  - {fraction: 1, size: 300}\n")
    with pytest.raises(ScheduleError, match="exceeds the final size"):
        schedule_from_yaml(str(bad), 10, 128)


def test_unknown_curriculum():
    with pytest.raises(ScheduleError, match="unknown curriculum 'efficientrain'"):
        build_schedule("efficientrain", 10, 224)


def test_flop_counter_matches_analytic_count():
    # conv (no bias) + global sum: forward 2*Cout*Cin*k*k*H*W; backward computes only the weight gradient of
    # the first layer (the input needs no gradient), the same count again
    cin, cout, k = 3, 8, 3
    model = nn.Sequential(nn.Conv2d(cin, cout, k, padding=1, bias=False))
    for size in (16, 24):
        fwd = 2 * cout * cin * k * k * size * size
        assert train_flops_per_image(model, size) == pytest.approx(2 * fwd)


def test_flop_count_leaves_model_and_rng_alone():
    model = timm.create_model("resnet10t", num_classes=10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state = torch.get_rng_state()
    train_flops_per_image(model, 32)
    assert torch.equal(state, torch.get_rng_state())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k  # BatchNorm running stats untouched too


def test_schedule_command(capsys):
    rc = cli.main(["schedule", "--model", "resnet10t", "--curriculum", "efficienttrain", "--epochs", "300",
                   "--final-size", "224", "--num-classes", "10"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "1-180" in out and "181-240" in out and "241-300" in out
    line = [l for l in out.splitlines() if l.startswith("predicted compute")][0]
    predicted = float(line.split(":")[1].split()[0])
    # independent estimate: at 160/192/224 every ResNet feature map divides evenly, so conv FLOPs scale with
    # pixels: 0.6*(160/224)^2 + 0.2*(192/224)^2 + 0.2 = 0.653 (the head and BN add a little)
    pixels = 0.6 * (160 / 224) ** 2 + 0.2 * (192 / 224) ** 2 + 0.2
    assert predicted == pytest.approx(pixels, rel=0.02)


def test_schedule_command_errors(capsys):
    assert cli.main(["schedule", "--model", "not_a_model", "--epochs", "10"]) == 2
    assert "unknown timm model 'not_a_model'" in capsys.readouterr().err
    assert cli.main(["schedule", "--model", "resnet10t", "--curriculum", "fast", "--epochs", "10"]) == 2
    assert "unknown curriculum 'fast'" in capsys.readouterr().err
    # ConvNeXt cannot take inputs smaller than 32: its efficienttrain++ list starts at 160 of 224, 22 px at 32
    assert cli.main(["schedule", "--model", "convnext_atto", "--curriculum", "efficienttrain++", "--epochs", "10",
                     "--final-size", "32", "--num-classes", "10"]) == 2
    assert "cannot take 22x22" in capsys.readouterr().err
