"""train.compile across a curriculum: one static graph per stage size and compiled function, no recompiles from the
last (dropped) partial batch, through ViT size switches (replaced Parameters), EMA and resume; compile time apart.

torch.compile runs with the ``aot_eager`` backend here (dynamo's tracing and AOT autograd, no code generation: the
graph and recompile behaviour are the backend's input, the same as with inductor, at a fraction of the CPU time).
The reference for the graph count is analytic: the schedule's distinct sizes. EfficientTrain's stages are
``b_list = [160] * 3 + [192] * 1 + [224] * 1`` over five equal parts of the run (LeapLabTHU/EfficientTrain,
ET_training.py): at final size 64 and 5 epochs that is 160/224 and 192/224 of 64 rounded to even sizes, 46 for
epochs 1-3, 54 for epoch 4, 64 for epoch 5 -- three sizes (efficienttrain_ext/curriculum/schedules.py).
"""

from __future__ import annotations

import shutil

import pytest
import torch
import timm
import torch._dynamo
from timm.optim import create_optimizer_v2

from efficienttrain_ext import cli
from efficienttrain_ext.config import ConfigError, load_config
from efficienttrain_ext.curriculum import plan
from efficienttrain_ext.integrations import CurriculumBatch
from efficienttrain_ext.engine.acceleration import optimizer_kernel_options, resolve_compile, use_cudnn_autotuning
from efficienttrain_ext.engine.checkpoint import load as load_checkpoint
from efficienttrain_ext.engine.compare import markdown_table

from _etrain_helpers import TINY_VIT, assert_same_run, make_image_folder, metrics, tiny_args

COMPILE = ["--set", "train.compile_backend=aot_eager"]


def _graphs() -> int:
    return int(torch._dynamo.utils.counters["stats"]["unique_graphs"])


def _breaks() -> int:
    return sum(torch._dynamo.utils.counters["graph_break"].values())


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("data"), per_class=8, size=64)


def test_one_graph_per_stage_size_and_exact_resume(folder, tmp_path):
    torch._dynamo.reset()
    # 10 images at batch 4: 2 full steps per epoch, the partial batch of 2 is dropped (no third shape).
    # Erasing after the crop keeps the crop inside the compiled batch path (one graph per size); with the default
    # order (erasing at full size, before the crop) that path is size-free and the crop runs after it.
    args = tiny_args(tmp_path, "full", "--data-root", str(folder), "--curriculum", "efficienttrain", *COMPILE,
                     "--set", "train.compile=model+pipeline", "--set", "aug.erasing_order=after_crop", subset=10,
                     val=4, batch=4, epochs=5, size=64)
    before, breaks = _graphs(), _breaks()
    assert cli.main(args) == 0
    rows = metrics(tmp_path / "full")
    assert [r["size"] for r in rows] == [46, 46, 46, 54, 64]
    # two compiled functions (the model, the batch path's float/crop/normalise), one static graph each per size
    assert _graphs() - before == 2 * 3 and _breaks() == breaks
    assert [r["compilations"] for r in rows] == [2, 0, 0, 2, 2]  # only where a stage starts
    assert all((r["compile_time"] > 0) == (r["compilations"] > 0) for r in rows)
    assert all(r["train_images"] == 8 for r in rows)
    # issue 27: the compiling step's time is apart, and so are its images: img/s counts the steps that were timed
    assert [r["timed_images"] for r in rows] == [4, 8, 8, 4, 4]
    assert all(r["img_s"] == pytest.approx(r["timed_images"] / r["train_time"], rel=1e-9) for r in rows)

    # resume at the last stage switch, in a copy: the same run, compiling only the sizes it still trains
    shutil.copytree(tmp_path / "full", tmp_path / "resumed")
    (tmp_path / "resumed" / "last.pt").unlink()
    torch._dynamo.reset()  # as in a new process: nothing cached
    before = _graphs()
    assert cli.main(["train", "--resume", str(tmp_path / "resumed" / "stage1.pt")]) == 0
    assert _graphs() - before == 2 * 2
    assert [r["compilations"] for r in metrics(tmp_path / "resumed")] == [2, 0, 0, 2, 2]
    assert_same_run(tmp_path / "full", tmp_path / "resumed", 5)


def test_compare_reports_compile_time_apart():
    row = dict(seeds=1, of=1, epochs=5, sizes="46/54/64", top1_mean=50.0, top1_std=None, ema_top1_mean=None,
               ema_top1_std=None, train_time_mean=100.0, train_time_std=None, measured=1.0, cpu=1.0,
               predicted_mean=1.0)
    result = {"reference": "none", "baseline_epochs": 5, "curricula": [
        {**row, "curriculum": "none", "compile_time_mean": 20.0, "compile_time_std": None},
        {**row, "curriculum": "efficienttrain", "compile_time_mean": 61.5, "compile_time_std": 1.5},
        {**row, "curriculum": "eager", "compile_time_mean": 0.0, "compile_time_std": None}]}
    text = markdown_table(result)
    assert text.splitlines()[-1] == ("torch.compile time (s, not in train time): none 20.0, efficienttrain "
                                     "61.5 ± 1.5")
    assert "compile" not in markdown_table({**result, "curricula": [result["curricula"][2]]})


def test_vit_size_switch_trains_the_new_pos_embed_through_the_compiled_model(folder, tmp_path):
    torch._dynamo.reset()
    # DeiT at final 64: 48 then 64; set_input_size replaces pos_embed. A compiled graph that kept the old Parameter
    # would leave the new one untouched after the switch
    args = tiny_args(tmp_path, "vit", "--data-root", str(folder), "--curriculum", "efficienttrain", *COMPILE,
                     "--set", "train.compile=model", subset=8, val=4, batch=4, epochs=3, size=64, model=TINY_VIT)
    before = _graphs()
    assert cli.main(args) == 0
    assert [r["size"] for r in metrics(tmp_path / "vit")] == [48, 48, 64]
    assert _graphs() - before == 2
    at_switch, last = load_checkpoint(tmp_path / "vit" / "stage1.pt"), load_checkpoint(tmp_path / "vit" / "last.pt")
    assert at_switch["model"]["pos_embed"].shape == last["model"]["pos_embed"].shape == (1, 17, 32)
    assert not torch.equal(at_switch["model"]["pos_embed"], last["model"]["pos_embed"])
    assert not torch.equal(at_switch["ema"]["pos_embed"], last["ema"]["pos_embed"])  # the EMA follows it


def test_compile_and_kernel_options_resolve_per_device():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_compile("auto", cpu) == "off" and resolve_compile("auto", cuda) == "model"
    assert resolve_compile("model+pipeline", cpu) == "model+pipeline"
    with pytest.raises(ValueError, match="train.compile must be"):
        resolve_compile("max", cpu)
    # auto: torch's own default on the CPU (keeps CPU results), fused where the class has it on CUDA, else foreach
    assert optimizer_kernel_options("adamw", "auto", cpu) == {}
    assert optimizer_kernel_options("adamw", "auto", cuda) == {"fused": True, "foreach": False}
    assert optimizer_kernel_options("sgd", "auto", cuda) == {"fused": True, "foreach": False}
    assert optimizer_kernel_options("lamb", "auto", cuda) == {"foreach": True}  # timm's Lamb has no fused kernel
    assert optimizer_kernel_options("adamw", "off", cuda) == {"foreach": False}
    # an explicit choice the optimizer lacks is refused when the configuration loads, naming both
    with pytest.raises(ConfigError, match="optim.fused=fused: timm's optimizer 'lamb' has no fused implementation"):
        load_config(overrides=["optim.opt=lamb", "optim.fused=fused"])
    with pytest.raises(ConfigError, match="optim.opt: timm has no optimizer 'adamx'"):
        load_config(overrides=["optim.opt=adamx", "optim.fused=foreach"])
    assert load_config(overrides=["optim.opt=lookahead_adamw", "optim.fused=fused"]).optim.fused == "fused"
    model = torch.nn.Linear(4, 2)
    opt = create_optimizer_v2(model, "adamw", lr=1e-3, **optimizer_kernel_options("adamw", "fused", cpu))
    assert opt.defaults["fused"] is True  # torch has a fused CPU AdamW: the option reaches the optimizer
    was = torch.backends.cudnn.benchmark
    try:
        use_cudnn_autotuning(cuda, deterministic=False)
        assert torch.backends.cudnn.benchmark is True
        use_cudnn_autotuning(cuda, deterministic=True)
        assert torch.backends.cudnn.benchmark is False
    finally:
        torch.backends.cudnn.benchmark = was


def test_channels_last_run_and_bad_compile_values(folder, tmp_path, capsys):
    args = tiny_args(tmp_path, "cl", "--data-root", str(folder), "--curriculum", "none", "--set",
                     "train.channels_last=true", subset=8, val=4, batch=4, epochs=1, size=32)
    assert cli.main(args) == 0
    assert metrics(tmp_path / "cl")[0]["train_images"] == 8
    # YAML's bare off is the choice "off"; an unknown choice is refused naming the key
    base = tiny_args(tmp_path, "bad", subset=8, val=4, batch=4, epochs=1)
    assert cli.main([*base, "--set", "train.compile=fast"]) == 2
    assert "train.compile: Input should be 'auto', 'off', 'model' or 'model+pipeline'" in capsys.readouterr().err


def test_curriculum_batch_recipe_with_module_compile():
    # docs/integrations.md's recipe: nn.Module.compile(dynamic=False) compiles in place (state_dict keys unchanged,
    # so Lightning checkpoints stay as they are); each stage size then compiles once, across the ViT switch
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = timm.create_model("deit_tiny_patch16_224", num_classes=2, img_size=64, depth=1, embed_dim=32,
                              num_heads=2)
    schedule = plan("efficienttrain", epochs=3, final_size=64, model=model)
    curriculum = CurriculumBatch(schedule, randaugment="rand-m9-mstd0.5-inc1")
    curriculum.switch(model, 0)
    keys = list(model.state_dict())
    model.compile(dynamic=False, backend="aot_eager")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    before, pos = _graphs(), {}
    for epoch in range(schedule.epochs):
        curriculum.switch(model, epoch, optimizer)
        for step in range(2):
            x = curriculum(torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8), epoch=epoch, step=step, steps=2)
            loss = torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 0, 1]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        pos[epoch] = (curriculum.size, model.pos_embed.detach().clone())
    assert [pos[e][0] for e in range(3)] == [48, 48, 64]
    assert _graphs() - before == 2 and list(model.state_dict()) == keys
    assert not torch.equal(pos[1][1][:, :1], pos[2][1][:, :1])  # the new pos_embed trains through the compiled call


def test_summary_rates_leave_out_the_compiling_steps_images():
    """Per stage: img/s and time per image from the timed images only (a compiling step's images were counted
    while its time was not, which inflated both by steps / (steps - 1)); the cost vs baseline prices every image."""
    from efficienttrain_ext.engine.report import summary_table

    rows = [{"epoch": 1, "stage": 0, "train_images": 8, "timed_images": 4, "train_time": 1.0, "top1": 10.0,
             "wall_time": 5.0, "compile_time": 3.0},
            {"epoch": 2, "stage": 1, "train_images": 8, "timed_images": 4, "train_time": 2.0, "top1": 20.0,
             "wall_time": 9.0, "compile_time": 2.0}]
    stages = [{"size": 32, "relative_flops": 0.25, "baseline_epochs": 2}, {"size": 64, "relative_flops": 1.0}]
    lines = summary_table(rows, stages, 0.625, 64).splitlines()
    s0, s1 = lines[1].split(), lines[2].split()
    assert (float(s0[3]), float(s0[6])) == (4.0, 0.5)  # 4 timed images in 1 s; 0.25 s/img vs 0.5 at 64
    assert (float(s1[3]), float(s1[6])) == (2.0, 1.0)
    # 8 images at 0.25 s + 8 at 0.5 s against 16 at 0.5 s
    assert "measured 0.750" in lines[-1] and "torch.compile 5.0 s (not in train time)" in lines[-2]
    # rows written before timed_images existed: all images, as then
    old = [{k: v for k, v in r.items() if k != "timed_images"} for r in rows]
    assert float(summary_table(old, stages, 0.625, 64).splitlines()[1].split()[3]) == 8.0
