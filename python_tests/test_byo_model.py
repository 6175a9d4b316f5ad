"""Bring your own model: ``--model package.module:factory``, ``--import MODULE`` (timm registration),
``Trainer(cfg, model=...)``, and the message that says how to declare a model's sizes."""

from __future__ import annotations

import os
import textwrap

import pytest
import torch

from efficienttrain_ext import cli
from efficienttrain_ext.config import load_config
from efficienttrain_ext.engine.trainer import Trainer

from _etrain_helpers import FMNIST, metrics, tiny_args

pytestmark = pytest.mark.skipif(not os.path.isdir(FMNIST), reason="dataset-fashion-mnist is not installed")

# a small ConvNet, and one that patchifies by reshaping (its input must be a multiple of 8: the size rule's probe
# cannot know that, the FLOP count's trial run finds it)
MODELS = '''
import torch
from torch import nn


class SmallNet(nn.Module):
    def __init__(self, num_classes, width=8):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                                      nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU())
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        return self.head(self.features(x).mean((2, 3)))


class Patches8(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.embed = nn.Linear(3 * 64, 16)
        self.head = nn.Linear(16, num_classes)

    def forward(self, x):
        n, c, h, w = x.shape
        p = x.view(n, c, h // 8, 8, w // 8, 8)  # fails unless h and w are multiples of 8
        p = p.permute(0, 2, 4, 1, 3, 5).reshape(n, -1, c * 64)
        return self.head(self.embed(p).mean(1))


def small(num_classes, width=8):
    return SmallNet(num_classes, width)


def patches8(num_classes):
    return Patches8(num_classes)


def not_a_module(num_classes):
    return "a string"


def no_num_classes():
    return SmallNet(10)


NOT_CALLABLE = 3
'''


@pytest.fixture
def user_modules(tmp_path, monkeypatch):
    """A package of the user's on sys.path, with a unique name per test (imports are cached per process)."""
    name = f"user_models_{os.getpid()}_{len(os.listdir(tmp_path))}_{tmp_path.name}".replace("-", "_")
    (tmp_path / f"{name}.py").write_text(MODELS)
    (tmp_path / f"{name}_timm.py").write_text(textwrap.dedent(f'''
        from timm.models import register_model
        from {name} import SmallNet


        @register_model
        def {name}_registered(pretrained=False, num_classes=1000, width=8, **timm_kwargs):
            # timm also passes pretrained_cfg, pretrained_cfg_overlay, cache_dir (and drop_path_rate if given)
            if timm_kwargs.get("drop_path_rate"):
                raise TypeError("SmallNet has no drop_path_rate")
            return SmallNet(num_classes, width)
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def _run(tmp_path, run, model_args, *extra, epochs=2, size=32):
    return cli.main(tiny_args(tmp_path, run, "--curriculum", "efficienttrain", *extra, model=model_args, epochs=epochs,
                              size=size, subset=32, val=16))


def test_factory_from_the_command_line(tmp_path, user_modules, capsys):
    assert _run(tmp_path, "factory", ("--model", f"{user_modules}:small"), "--set", "model.kwargs={width: 4}") == 0
    rows = metrics(tmp_path / "factory")
    assert [r["size"] for r in rows] == [22, 32]  # any size: efficienttrain's 160/224 of 32, even
    assert all(0 <= r["top1"] <= 100 for r in rows)
    assert "predicted compute" in capsys.readouterr().out


def test_import_that_registers_a_timm_model(tmp_path, user_modules):
    # SmallNet has no stochastic depth: model.drop_path=null (the recipe's default 0.1 is passed to timm models)
    assert _run(tmp_path, "registered", ("--model", f"{user_modules}_registered"), "--import",
                f"{user_modules}_timm", "--set", "model.drop_path=null", epochs=1) == 0
    assert len(metrics(tmp_path / "registered")) == 1


def test_trainer_with_a_module_object(tmp_path, user_modules):
    import importlib

    model = importlib.import_module(user_modules).small(10, width=4)
    cfg = load_config(None, [f"train.output={tmp_path}", "train.name=obj", "train.epochs=2", "data.final_size=32",
                             "train.batch_size=16", "data.workers=0", "data.train_subset=32", "data.val_subset=16",
                             "train.progress=false"])
    trainer = Trainer(cfg, model=model)
    assert trainer.model is model
    last = trainer.fit()
    assert last["epoch"] == 2 and [r["size"] for r in metrics(tmp_path / "obj")] == [22, 32]


def test_undeclared_sizes_say_how_to_declare_them(tmp_path, user_modules, capsys):
    # 22 is not a multiple of 8: the trial run before training fails and names the keys that declare the sizes
    assert _run(tmp_path, "p8", ("--model", f"{user_modules}:patches8")) == 2
    err = capsys.readouterr().err
    assert "cannot take 22x22 inputs" in err and "curriculum.size_multiple" in err and "curriculum.min_size" in err
    # declared: every size a multiple of 8 (160/224 of 32 -> 24)
    assert _run(tmp_path, "p8", ("--model", f"{user_modules}:patches8"), "--set", "curriculum.size_multiple=8") == 0
    assert [r["size"] for r in metrics(tmp_path / "p8")] == [24, 32]


def test_input_size_rule_method_is_the_model_s_declaration(user_modules):
    import importlib

    from efficienttrain_ext.curriculum import plan

    model = importlib.import_module(user_modules).patches8(10)
    model.input_size_rule = lambda: (8, 16)  # what a model class would define as a method
    assert [s.size for s in plan("efficienttrain", epochs=10, final_size=64, model=model).stages] == [48, 56, 64]
    with torch.no_grad():
        for size in (48, 56, 64):
            model(torch.randn(1, 3, size, size))


@pytest.mark.parametrize("spec,message", [
    (":small", "a factory is written package.module:callable"),
    ("{mod}:missing", "has no attribute 'missing'"),
    ("{mod}:NOT_CALLABLE", "is not callable"),
    ("{mod}:not_a_module", "returned str, not an nn.Module"),
    ("{mod}:no_num_classes", "must accept num_classes"),
    ("no_such_package_xyz:f", "cannot import 'no_such_package_xyz'"),
    ("resnet_typo50", "unknown timm model 'resnet_typo50'"),
])
def test_bad_model_specs(tmp_path, user_modules, capsys, spec, message):
    assert _run(tmp_path, "bad", ("--model", spec.format(mod=user_modules)), epochs=1) == 2
    err = capsys.readouterr().err
    assert message in err, err
    if "unknown timm model" in err:
        assert "package.module:factory" in err and "model.imports" in err  # says how to bring one's own


def test_registered_model_without_drop_path(tmp_path, user_modules, capsys):
    assert _run(tmp_path, "reg", ("--model", f"{user_modules}_registered"), "--import", f"{user_modules}_timm",
                epochs=1) == 2
    err = capsys.readouterr().err
    assert "drop_path_rate" in err and "model.drop_path=null" in err


def test_bad_import(tmp_path, capsys):
    assert _run(tmp_path, "bad", ("--model", "resnet10t"), "--import", "no_such_module_abc", epochs=1) == 2
    assert "model.imports: cannot import 'no_such_module_abc'" in capsys.readouterr().err

