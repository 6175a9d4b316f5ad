"""EfficientTrain as a PyTorch Lightning callback: ``Trainer(callbacks=[EfficientTrain(final_size=224)])``.

The callback needs no change to the LightningModule. Its training batches are ``[images, targets, ...]`` lists (what
the default collate makes of ``(image, target)`` samples) or dicts (``image_key=``). Per step, in
``on_train_batch_start``, the images are replaced in the batch by the curriculum's (RandAugment at m, low-frequency
crop to B, normalisation: :class:`~efficienttrain_ext.integrations.hooks.CurriculumBatch`), so ``training_step``
sees the stage's size.

Images: uint8 batches are best (``transforms.PILToTensor()`` in the dataset: a quarter of the bytes, and RandAugment
works on pixels); float batches are accepted when ``input_mean``/``input_std`` say how they were normalised
(``ToTensor()`` + ``Normalize``), which is undone exactly. The loader must not augment beyond the crop and flip:
the callback's RandAugment follows the schedule. Validation and test batches get the same conversion without
augmentation (``process_eval=False`` leaves them alone).

ViT/DeiT and Swin are resized in place at stage starts (``set_input_size``), the optimizers re-pointed at the new
Parameters and their state resampled, EMA copies inside the module (timm ``ModelEmaV2/V3``, torch
``AveragedModel``) resized along; under the ``ddp`` strategy the DistributedDataParallel wrapper is rebuilt (it
holds the old Parameters). Validation runs at the final size on a resized copy, so the trained weights are never
resampled back and forth. Checkpoints record the sizes; resuming (``fit(ckpt_path=...)``) resizes the model to them
before Lightning loads the weights, and the run continues at the checkpoint's stage, size and magnitude.
"""

from __future__ import annotations

from typing import Any, Mapping, MutableMapping, Sequence

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

try:
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import Callback
except ImportError as e:  # optional dependency
    raise ImportError("efficienttrain_ext.integrations.lightning needs PyTorch Lightning: pip install lightning "
                      "(or pip install efficienttrain_ext[integrations])") from e

from timm.utils import ModelEmaV2, ModelEmaV3
from torch.optim.swa_utils import AveragedModel

from ..curriculum import DEFAULT_M0, plan
from ..curriculum.schedules import Schedule
from ..curriculum.sizes import can_resize, current_input_size
from ..curriculum.switching import resized_view, switch_input_size
from ..errors import TrainError
from .hooks import IMAGENET_MEAN, IMAGENET_STD, CurriculumBatch

__all__ = ["EfficientTrain"]

_EMA_TYPES = (ModelEmaV2, ModelEmaV3, AveragedModel)


class EfficientTrain(Callback):
    """The EfficientTrain curriculum for any LightningModule (module docstring).

    Args:
        curriculum: ``efficienttrain``, ``efficienttrain++``, ``progressive``, ``none`` or a schedule .yaml file.
        final_size: the final input size v (the loader's image size).
        epochs: the run's length (default: ``Trainer(max_epochs)``); for efficienttrain++ the budget in final-size
            epochs, and ``max_epochs`` must be the schedule's (longer) length, ``plan(...).epochs``.
        mean, std: the normalisation of the model's input.
        input_mean, input_std: the normalisation float batches arrive with (None: uint8, or floats in [0, 1]).
        randaugment, backend: the RandAugment policy (m set by the schedule) and its implementation; None: none.
        resize: how B is reached (``lowfreq``; ``bilinear``/``bicubic``/``area`` for ablations).
        m0, size_multiple, min_size, **schedule_options: as :func:`efficienttrain_ext.curriculum.plan`.
        model: attribute path of the backbone in the LightningModule (default: every submodule with
            ``set_input_size`` outside EMA copies; else the module whose size rule applies is the whole module).
        emas: attribute paths of EMA copies to resize too (default: found by type).
        erasing, mixup: timm ``RandomErasing`` / ``Mixup`` (with Mixup the targets in the batch become soft: the
            module's loss must take them); erasing_order: ``before_crop`` (erase the full-size image, as
            EfficientTrain) or ``after_crop``.
        image_key, target_key: where images and targets sit in a batch (list index or dict key).
        process_eval: convert validation/test batches the same way (no augmentation, final size).
        seed: RandAugment draws from a generator seeded by (seed, rank, epoch, batch) (default: torch's global RNG).
        log: log ``efficienttrain/size`` and ``efficienttrain/magnitude`` every step.
    """

    def __init__(self, curriculum: str = "efficienttrain", *, final_size: int, epochs: int | None = None,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 input_mean: Sequence[float] | None = None, input_std: Sequence[float] | None = None,
                 randaugment: str | None = "rand-m9-mstd0.5-inc1", backend: str = "batched", resize: str = "lowfreq",
                 m0: float = DEFAULT_M0, size_multiple: int | None = None, min_size: int | None = None,
                 model: str | None = None, emas: Sequence[str] | None = None, erasing: Any = None, mixup: Any = None,
                 image_key: int | str = 0, target_key: int | str = 1, process_eval: bool = True,
                 seed: int | None = None, log: bool = True, erasing_order: str = "before_crop",
                 **schedule_options: Any):
        super().__init__()
        if curriculum == "efficienttrain++" and epochs is None:
            raise TrainError("efficienttrain++ needs epochs= (its budget in final-size epochs); the Trainer's "
                             "max_epochs is then the schedule's length, plan('efficienttrain++', ...).epochs")
        self.curriculum, self.final_size, self.epochs = curriculum, int(final_size), epochs
        self.mean, self.std, self.input_mean, self.input_std = mean, std, input_mean, input_std
        self.randaugment, self.backend, self.resize = randaugment, backend, resize
        self.m0, self.size_multiple, self.min_size = m0, size_multiple, min_size
        self.model_path, self.ema_paths = model, None if emas is None else list(emas)
        self.erasing, self.mixup, self.erasing_order = erasing, mixup, erasing_order
        self.image_key, self.target_key = image_key, target_key
        self.process_eval, self.seed, self.log = process_eval, seed, log
        self.schedule_options = schedule_options
        self.schedule: Schedule | None = None
        self.step: CurriculumBatch | None = None
        self.size: int | None = None  # of the last training batch
        self.magnitude: float | None = None
        self._targets: list[str] = []  # resizable modules (paths in the LightningModule)
        self._emas: list[str] = []
        self._swapped: list[tuple[str, nn.Module]] = []
        self._restore_hook: Any = None
        self._module: nn.Module | None = None

    # ------------------------------------------------------------------ modules
    def _find(self, pl_module: nn.Module) -> tuple[list[str], list[str]]:
        modules = dict(pl_module.named_modules())
        if self.ema_paths is not None:
            emas = list(self.ema_paths)
        else:
            emas = [f"{n}.module" if n else "module" for n, m in modules.items() if isinstance(m, _EMA_TYPES)]
        for p in emas:
            if p not in modules:
                raise TrainError(f"EfficientTrain(emas=...): the LightningModule has no submodule {p!r}")
        if self.model_path is not None:
            if self.model_path not in modules:
                raise TrainError(f"EfficientTrain(model={self.model_path!r}): the LightningModule has no such "
                                 f"submodule; its children: {[n for n, _ in pl_module.named_children()]}")
            return ([self.model_path] if can_resize(modules[self.model_path]) else []), emas
        skip = [p.rsplit(".", 1)[0] for p in emas if "." in p]  # the EMA wrappers: their copies are not targets
        targets: list[str] = []
        for name, mod in modules.items():
            if not name or any(name == r or name.startswith(r + ".") for r in skip + targets):
                continue
            if can_resize(mod):
                targets.append(name)
        return targets, emas

    def _rule_module(self, pl_module: nn.Module) -> nn.Module:
        if self._targets:
            return pl_module.get_submodule(self._targets[0])
        if self.model_path is not None:
            return pl_module.get_submodule(self.model_path)
        for mod in pl_module.modules():  # a model that states its sizes (input_size_rule, a timm pretrained_cfg)
            if callable(getattr(mod, "input_size_rule", None)) or getattr(mod, "pretrained_cfg", None):
                return mod
        return pl_module

    def _emas_of(self, pl_module: nn.Module, target: nn.Module) -> list[nn.Module]:
        return [e for e in (pl_module.get_submodule(p) for p in self._emas) if type(e) is type(target)]

    def _resize(self, pl_module: nn.Module, size: int, optimizers: Sequence[torch.optim.Optimizer] = ()) -> bool:
        """Every resizable module (and its EMA copies) to ``size``; whether Parameters were replaced."""
        replaced = False
        for path in self._targets:
            target = pl_module.get_submodule(path)
            replaced |= bool(switch_input_size(target, size, list(optimizers), self._emas_of(pl_module, target)))
        return replaced

    # ------------------------------------------------------------------ setup
    def setup(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", stage: str) -> None:
        self._module = pl_module
        self._targets, self._emas = self._find(pl_module)
        fitting = stage == "fit"
        epochs = self.epochs if self.epochs is not None else trainer.max_epochs
        if epochs is None or epochs < 1:
            if fitting:
                raise TrainError("EfficientTrain needs the run's length: Trainer(max_epochs=N) or "
                                 "EfficientTrain(epochs=N)")
            epochs = 1
        self.schedule = plan(self.curriculum, epochs=int(epochs), final_size=self.final_size,
                             model=self._rule_module(pl_module), m0=self.m0, size_multiple=self.size_multiple,
                             min_size=self.min_size, **self.schedule_options)
        if fitting and trainer.max_epochs != self.schedule.epochs:
            raise TrainError(f"the {self.schedule.name} schedule runs {self.schedule.epochs} epochs but the Trainer "
                             f"has max_epochs={trainer.max_epochs}: set Trainer(max_epochs={self.schedule.epochs})")
        self.step = CurriculumBatch(self.schedule, self.mean, self.std, randaugment=self.randaugment,
                                    backend=self.backend, input_mean=self.input_mean, input_std=self.input_std,
                                    resize=self.resize, erasing=self.erasing, mixup=self.mixup,
                                    erasing_order=self.erasing_order)
        if fitting:
            # before configure_optimizers (the strategy's setup comes later): nothing to re-point yet
            self._resize(pl_module, self.schedule.stages[0].size)
            self._install_resize_on_load(pl_module)

    def _install_resize_on_load(self, pl_module: "pl.LightningModule") -> None:
        """Resuming: Lightning calls the module's ``on_load_checkpoint`` right before it loads the weights; the
        model is brought to the checkpoint's sizes there (an instance attribute, removed at teardown)."""
        original = pl_module.on_load_checkpoint

        def on_load_checkpoint(checkpoint: dict[str, Any]) -> None:
            state = checkpoint.get("callbacks", {}).get(self.state_key) or {}
            for path, size in (state.get("input_sizes") or {}).items():
                if path not in self._targets:
                    raise TrainError(f"the checkpoint resized {path!r}, which is not a resizable module of this "
                                     f"LightningModule ({self._targets})")
                target = pl_module.get_submodule(path)
                switch_input_size(target, int(size), None, self._emas_of(pl_module, target))
            return original(checkpoint)

        pl_module.on_load_checkpoint = on_load_checkpoint  # type: ignore[method-assign]
        self._restore_hook = original

    def teardown(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", stage: str) -> None:
        if self._restore_hook is not None:
            del pl_module.on_load_checkpoint  # the class's own method again
            self._restore_hook = None
        self._swap_back(pl_module)

    # ------------------------------------------------------------------ training
    def on_train_epoch_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        size = self.schedule.size_at(trainer.current_epoch)
        if self._resize(pl_module, size, trainer.optimizers):
            self._rewrap(trainer)

    @staticmethod
    def _rewrap(trainer: "pl.Trainer") -> None:
        """A new DDP wrapper after Parameters were replaced (the old one reduces the old Parameters' gradients)."""
        strategy = trainer.strategy
        wrapped = strategy.model
        if wrapped is strategy.lightning_module:
            return
        if isinstance(wrapped, DistributedDataParallel) and callable(getattr(strategy, "configure_ddp", None)):
            strategy.model = strategy.lightning_module
            strategy.configure_ddp()
            return
        raise TrainError(f"the size switch replaced Parameters, which the {type(strategy).__name__} strategy's "
                         f"{type(wrapped).__name__} wrapper cannot follow; use the ddp strategy, or build the model "
                         "so that no Parameter depends on the input size (timm ViT: dynamic_img_size=True)")

    def _generator(self, trainer: "pl.Trainer", batch_idx: int) -> torch.Generator | None:
        if self.seed is None:
            return None
        key = (((self.seed * 1_000_003 + trainer.global_rank) * 10_007 + trainer.current_epoch) * 1_000_033
               + batch_idx) % (2**63 - 1)
        return torch.Generator().manual_seed(key)

    def on_train_batch_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", batch: Any,
                             batch_idx: int) -> None:
        images, targets = _get(batch, self.image_key), _get(batch, self.target_key) if self.mixup else None
        steps = trainer.num_training_batches
        epoch = trainer.current_epoch
        finite = isinstance(steps, int) or (isinstance(steps, float) and steps != float("inf"))
        kwargs = dict(epoch=epoch, step=min(batch_idx, int(steps)), steps=max(int(steps), 1)) if finite else \
            dict(epoch=epoch)
        out = self.step(images, targets, generator=self._generator(trainer, batch_idx), **kwargs)
        if self.mixup:
            x, y = out
            _put(batch, self.image_key, x)
            _put(batch, self.target_key, y)
        else:
            _put(batch, self.image_key, out)
        self.size, self.magnitude = self.step.size, self.step.magnitude
        if self.log:
            pl_module.log_dict({"efficienttrain/size": float(self.size), "efficienttrain/magnitude": self.magnitude},
                               on_step=True, on_epoch=False, batch_size=int(images.shape[0]))

    # ------------------------------------------------------------------ evaluation
    def _eval_batch(self, batch: Any) -> None:
        if self.process_eval and self.step is not None:
            _put(batch, self.image_key, self.step.eval(_get(batch, self.image_key)))

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self._eval_batch(batch)

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self._eval_batch(batch)

    def _swap_in_views(self, pl_module: nn.Module) -> None:
        """Resized copies at the final size in place of the training-size modules, for evaluation."""
        for path in self._targets + self._emas:
            mod = pl_module.get_submodule(path)
            if current_input_size(mod) not in (None, self.final_size):
                self._swapped.append((path, mod))
                _set_submodule(pl_module, path, resized_view(mod, self.final_size))

    def _swap_back(self, pl_module: nn.Module) -> None:
        while self._swapped:
            path, mod = self._swapped.pop()
            _set_submodule(pl_module, path, mod)

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._swap_in_views(pl_module)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self._swap_back(pl_module)

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self._swap_in_views(pl_module)

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._swap_back(pl_module)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        module = self._module
        sizes = {} if module is None else {p: current_input_size(module.get_submodule(p)) for p in self._targets}
        return {"input_sizes": sizes, "schedule": self.schedule.to_dict() if self.schedule else None}


def _get(batch: Any, key: int | str) -> torch.Tensor:
    try:
        value = batch[key]
    except (KeyError, IndexError, TypeError) as e:
        raise TypeError(f"EfficientTrain: the batch ({type(batch).__name__}) has no entry {key!r}; batches are "
                        "[images, targets, ...] lists or dicts (image_key=..., target_key=...)") from e
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"EfficientTrain: batch[{key!r}] is a {type(value).__name__}, not an image tensor")
    return value


def _put(batch: Any, key: int | str, value: torch.Tensor) -> None:
    if isinstance(batch, tuple):
        raise TypeError("EfficientTrain replaces the images in the batch, but the batch is a tuple: return a list "
                        "from the collate_fn (the default collate does) or a dict")
    if not isinstance(batch, (list, MutableMapping)):
        raise TypeError(f"EfficientTrain: cannot replace images in a {type(batch).__name__} batch; use a list or dict")
    batch[key] = value


def _set_submodule(root: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, name, module)
