"""Two-process Lightning DDP run (gloo, CPU) of a tiny DeiT with the EfficientTrain callback, for test_lightning.py.

``python lightning_ddp_run.py OUT_DIR``: Lightning's ddp strategy starts the second process by running this script
again. Each rank writes OUT_DIR/rank{r}.json: the sizes its training steps saw, whether the DDP wrapper held the
module's current Parameters after every switch, and a digest of the final weights.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys

import lightning.pytorch as pl
import torch
from torch.nn.parallel import DistributedDataParallel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lightning_modules import Classifier, loaders, tiny_deit  # noqa: E402

from efficienttrain_ext.integrations.lightning import EfficientTrain  # noqa: E402


class CheckWrapper(pl.Callback):
    """After EfficientTrain's epoch start: does the DDP wrapper reduce the module's current Parameters?"""

    def __init__(self):
        self.wrapper_current = []

    def on_train_epoch_start(self, trainer, pl_module):
        ddp = trainer.strategy.model
        ok = isinstance(ddp, DistributedDataParallel) and \
            {id(p) for p in ddp.parameters()} == {id(p) for p in pl_module.parameters()}
        self.wrapper_current.append(bool(ok))


def main(out: str) -> None:
    torch.set_num_threads(1)
    pl.seed_everything(0, workers=True)
    model = Classifier(tiny_deit())
    check = CheckWrapper()
    trainer = pl.Trainer(max_epochs=5, accelerator="cpu", devices=2, strategy="ddp", logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0, callbacks=[EfficientTrain(final_size=96, seed=0), check])
    train, val = loaders(n_train=32, n_val=8, batch=8)
    trainer.fit(model, train, val)
    digest = hashlib.sha256()
    for k, v in sorted(model.model.state_dict().items()):
        digest.update(k.encode())
        digest.update(v.detach().contiguous().numpy().tobytes())
    record = {"rank": trainer.global_rank, "world": trainer.world_size,
              "train_sizes": [[e, s[-1]] for e, _, s, _ in model.train_seen], "val_sizes": model.val_sizes,
              "wrapper_current": check.wrapper_current, "weights": digest.hexdigest(),
              "pos_embed": list(model.model.pos_embed.shape)}
    with open(os.path.join(out, f"rank{trainer.global_rank}.json"), "w") as f:
        json.dump(record, f)


if __name__ == "__main__":
    main(sys.argv[1])
