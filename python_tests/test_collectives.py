"""Multi-process training where users run it: NCCL's device rules reproduced on the CPU, no per-step collective
beyond DDP's gradient buckets, elastic resume on another number of ranks, and two torchrun "nodes".

NCCL's default process group takes only CUDA tensors. ``init_process_group("cuda:gloo")`` makes a default group
with the same rule on a machine without a GPU: a CPU tensor given to it raises ``No backend type associated with
device type cpu``, which is how every multi-GPU run used to die at its first epoch end (an epoch-statistics
all-reduce of a CPU tensor over the default group)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.distributed as dist
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

from efficienttrain_ext.config import load_config
from efficienttrain_ext.engine import Trainer
from efficienttrain_ext.engine.checkpoint import load as load_checkpoint

from _etrain_helpers import REPO, TINY_VIT, make_image_folder, metrics, run_etrain, tiny_args

WORKER = textwrap.dedent("""
    import json, sys
    import torch, torch.distributed as dist
    from torch import nn
    from efficienttrain_ext.engine.collectives import Collectives
    from efficienttrain_ext.engine.distributed import DistInfo
    store_path, rank, world, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    dist.init_process_group("cuda:gloo", store=dist.FileStore(store_path, world), rank=rank, world_size=world)
    res = {}
    try:  # the default group takes no CPU tensor, as NCCL's does (what the old epoch-end all-reduce did)
        dist.all_reduce(torch.zeros(2, dtype=torch.float64))
        res["default_takes_cpu"] = True
    except RuntimeError as e:
        res["default_takes_cpu"] = False
        res["default_error"] = str(e)
    comm = Collectives(DistInfo(rank, world, 0, group=True), torch.device("cpu"))
    res["side_group"] = comm.host_group is not None and comm.device_group is comm.host_group
    res["sum"] = comm.sum([1.5, rank, 2])                                      # epoch statistics
    res["sum_tensor"] = comm.sum_tensor(torch.tensor([rank + 1.0, 2.0], dtype=torch.float64)).tolist()  # eval
    res["gather"] = comm.gather({"rank": rank})                                # checkpoint RNG states
    res["union"] = sorted(comm.union({f"bad{rank}.jpg", "common.jpg"}))        # unreadable files
    comm.barrier()                                                             # run directory
    torch.manual_seed(0)
    model, local = nn.Linear(3, 4), nn.Linear(3, 4)
    local.load_state_dict(model.state_dict())
    x = torch.arange(6.0).view(2, 3) * (rank + 1)
    ddp = comm.wrap(model)  # (held: DDP's reducer lives as long as the wrapper)
    ddp(x).pow(2).sum().backward()                                             # DDP's gradient buckets
    local(x).pow(2).sum().backward()
    res["grad"], res["local_grad"] = model.weight.grad.tolist(), local.weight.grad.tolist()
    bn = nn.BatchNorm1d(4)
    bn.running_mean.fill_(float(rank))
    comm.average_buffers(bn)                                                   # BatchNorm statistics
    res["running_mean"] = bn.running_mean.tolist()
    json.dump(res, open(out, "w"))
    comm.close()
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra):
    return dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1", **extra)


@pytest.mark.parametrize("world", [1, 2])
def test_every_collective_runs_under_a_cuda_only_default_group(tmp_path, world):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path / "store"), str(r), str(world),
                               str(tmp_path / f"r{r}.json")], env=_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for r in range(world)]
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0, out
    results = [json.loads((tmp_path / f"r{r}.json").read_text()) for r in range(world)]
    mean_grad = torch.stack([torch.tensor(r["local_grad"]) for r in results]).mean(0)
    for res in results:
        assert not res["default_takes_cpu"] and "device type cpu" in res["default_error"]
        assert res["side_group"]
        assert res["sum"] == [1.5 * world, sum(range(world)), 2.0 * world]
        assert res["sum_tensor"] == [sum(range(1, world + 1)), 2.0 * world]
        assert res["gather"] == [{"rank": k} for k in range(world)]
        assert res["union"] == sorted({"common.jpg"} | {f"bad{k}.jpg" for k in range(world)})
        torch.testing.assert_close(torch.tensor(res["grad"]), mean_grad)  # averaged over ranks
        assert res["running_mean"] == [sum(range(world)) / world] * 4


def _folder(tmp_path):
    return make_image_folder(tmp_path / "data", per_class=32, size=40)


def _torchrun(args, nproc, tmp_path, timeout=300):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m",
           "efficienttrain_ext", *args]
    proc = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_a_trainer_epoch_end_evaluation_and_checkpoint_under_a_cuda_only_default_group(tmp_path):
    # the whole trainer under NCCL's device rule: 2 ranks (torchrun) and 1 process with train.distributed=always
    root = _folder(tmp_path)
    for name, world in (("two", 2), ("one", 1)):
        args = tiny_args(tmp_path, name, "--data-root", str(root), "--curriculum", "efficienttrain", "--device",
                         "cpu", "--set", "train.dist_backend=cuda:gloo", "--set", "train.distributed=always",
                         epochs=2, subset=64, val=32, batch=4, size=32)
        if world == 2:
            _torchrun(args, 2, tmp_path)
        else:
            run_etrain(args)
        rows = metrics(tmp_path / name)
        assert len(rows) == 2 and all(r["train_images"] == 64 for r in rows)
        for r in rows:  # the validation sums cover all 32 images once: accuracy is a multiple of 1/32
            assert abs(r["top1"] * 32 / 100 - round(r["top1"] * 32 / 100)) < 1e-6
        ck = load_checkpoint(tmp_path / name)
        assert ck["world_size"] == world and len(ck["rng"]) == world and ck["epoch"] == 2


def _count_collectives(monkeypatch, counts):
    for name in ("all_reduce", "all_gather", "all_gather_object", "broadcast", "broadcast_object_list", "barrier",
                 "reduce", "all_to_all", "gather", "scatter", "reduce_scatter"):
        real = getattr(dist, name)

        def counted(*a, _real=real, _name=name, **k):
            counts[_name] = counts.get(_name, 0) + 1
            return _real(*a, **k)

        monkeypatch.setattr(dist, name, counted)


@pytest.mark.parametrize("accum", [1, 2])
def test_collectives_per_step_are_exactly_the_gradient_all_reduces(tmp_path, monkeypatch, accum):
    # a one-process group (train.distributed=always): DDP runs its reducer; a communication hook counts its gradient
    # bucket all-reduces, wrappers count every torch.distributed collective called from Python
    root = _folder(tmp_path)
    seen = {}
    for steps in (4, 8):
        counts: dict = {}
        cfg = load_config(overrides=[
            "model.name=resnet10t", f"data.root={root}", "data.dataset=imagefolder", "data.final_size=32",
            f"data.train_subset={steps * 4 * accum}", "data.val_subset=8", "data.workers=0",
            "curriculum.name=none", "train.epochs=1", "train.batch_size=4", f"train.accum_steps={accum}",
            "train.device=cpu", "train.progress=false", "train.distributed=always", "train.dist_backend=gloo",
            f"train.output={tmp_path / str(steps)}"])
        trainer = Trainer(cfg)
        try:
            def hook(state, bucket):
                counts["gradient_buckets"] = counts.get("gradient_buckets", 0) + 1
                return default_hooks.allreduce_hook(state, bucket)

            trainer.ddp_model.register_comm_hook(None, hook)
            _count_collectives(monkeypatch, counts)
            trainer.fit()
            monkeypatch.undo()
        finally:
            trainer.comm.close()
        seen[steps] = counts
    # DDP rebuilds its buckets after the first step, so the first step's count may differ; every later step
    # all-reduces the same buckets once
    per_step, rest = divmod(seen[8]["gradient_buckets"] - seen[4]["gradient_buckets"], 4)
    assert per_step >= 1 and rest == 0 and seen[4]["gradient_buckets"] - 3 * per_step >= 1
    # (the hook's own all-reduce goes through dist.all_reduce too: one per bucket)
    others4, others8 = ({k: v - (c["gradient_buckets"] if k == "all_reduce" else 0) for k, v in c.items()
                         if k != "gradient_buckets"} for c in (seen[4], seen[8]))
    assert others4 == others8 and others4  # the epoch end's collectives only: none per step


# a deterministic recipe: no random augmentation, no drop path, so that only the data order decides the trajectory
DETERMINISTIC = ["--set", "aug.randaugment=null", "--set", "aug.mixup=0", "--set", "aug.cutmix=0",
                 "--set", "aug.reprob=0", "--set", "data.scale=[1.0, 1.0]", "--set", "data.ratio=[1.0, 1.0]",
                 "--set", "data.hflip=0", "--set", "model.drop_path=0"]


def _elastic_args(tmp_path, root, name, batch, accum):
    return tiny_args(tmp_path, name, "--data-root", str(root), "--curriculum", "efficienttrain", "--device", "cpu",
                     *DETERMINISTIC, "--set", f"train.accum_steps={accum}", model=TINY_VIT, epochs=3, subset=64,
                     val=32, batch=batch, size=64)


@pytest.mark.parametrize("before,after", [(2, 1), (1, 2)], ids=["2to1", "1to2"])
def test_elastic_resume_on_another_number_of_ranks_matches_the_uninterrupted_run(tmp_path, before, after):
    # the global batch is 16: 2 ranks x 8, or 1 rank x 8 x 2 accumulated micro-batches. The uninterrupted run trains
    # 3 epochs on `before` ranks; the other resumes its stage-1 checkpoint (after epoch 2) on `after` ranks
    root = _folder(tmp_path)
    accum = {1: 2, 2: 1}

    def launch(args, nproc):
        if nproc == 2:
            _torchrun(args, 2, tmp_path)
        else:
            run_etrain(args)

    launch(_elastic_args(tmp_path, root, "full", 8, accum[before]), before)
    shutil.copytree(tmp_path / "full", tmp_path / "elastic")
    shutil.copy(tmp_path / "full" / "stage1.pt", tmp_path / "elastic" / "last.pt")
    assert load_checkpoint(tmp_path / "elastic")["epoch"] == 2
    launch(["train", "--resume", str(tmp_path / "elastic"), "--set", f"train.accum_steps={accum[after]}"], after)
    full, resumed = load_checkpoint(tmp_path / "full"), load_checkpoint(tmp_path / "elastic")
    assert resumed["world_size"] == after and resumed["global_batches"] == full["global_batches"] == [16, 16]
    assert resumed["global_step"] == full["global_step"] and resumed["epoch"] == 3
    for k, v in full["model"].items():  # fp32, another reduction order (DDP's average vs accumulation)
        torch.testing.assert_close(resumed["model"][k], v, rtol=1e-4, atol=1e-5, msg=k)
    for pid, st in full["optimizer"]["state"].items():
        torch.testing.assert_close(resumed["optimizer"]["state"][pid]["exp_avg"], st["exp_avg"], rtol=1e-3, atol=1e-6)
    a, b = metrics(tmp_path / "full"), metrics(tmp_path / "elastic")
    assert [r["lr"] for r in a] == pytest.approx([r["lr"] for r in b], rel=1e-9)
    assert [(r["size"], r["magnitude"], r["batch"]) for r in a] == [(r["size"], r["magnitude"], r["batch"]) for r in b]


def test_a_resume_that_changes_the_global_batch_is_refused(tmp_path):
    root = _folder(tmp_path)
    run_etrain(_elastic_args(tmp_path, root, "r", 8, 1))
    proc = run_etrain(["train", "--resume", str(tmp_path / "r"), "--set", "train.accum_steps=2",
                       "--set", "train.epochs=4"], check=False)
    assert proc.returncode == 2 and "different configuration" in proc.stderr
    proc = run_etrain(["train", "--resume", str(tmp_path / "r"), "--epochs", "3", "--set", "train.accum_steps=2"],
                      check=False)
    assert proc.returncode == 2 and "global batches [8, 8]" in proc.stderr and "[16, 16]" in proc.stderr


def test_two_torchrun_nodes_on_one_machine_train_an_epoch(tmp_path):
    # `torchrun --nnodes 2 --node_rank 0/1` with a localhost rendezvous: what a two-node job runs, on one machine
    root = _folder(tmp_path)
    port = _free_port()
    args = tiny_args(tmp_path, "nodes", "--data-root", str(root), "--curriculum", "efficienttrain", "--device",
                     "cpu", epochs=1, subset=64, val=32, batch=4, size=32)
    procs = []
    for node in (0, 1):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", f"--node_rank={node}",
               "--nproc_per_node=1", "--master_addr=127.0.0.1", f"--master_port={port}", "-m", "efficienttrain_ext",
               *args]
        procs.append(subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True))
    for p in procs:
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0, out
    (row,) = metrics(tmp_path / "nodes")
    assert row["train_images"] == 64  # 2 ranks x 8 steps x 4
    ck = load_checkpoint(tmp_path / "nodes")
    assert ck["world_size"] == 2 and ck["global_batches"] == [8]
