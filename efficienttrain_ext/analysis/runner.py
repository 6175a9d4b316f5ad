"""``etrain analyze``: the paper's Section 4 analysis for any checkpoints on the configuration's validation set.

* accuracy on low-pass / high-pass filtered validation images (:mod:`.spectral_eval`): ``spectral.csv``,
  ``spectral.md`` (one column per model) and ``spectral.png`` (accuracy vs radius);
* with ``cka``: linear CKA between every layer of the first model and every layer of the second (:mod:`.cka`) on
  the first ``cka_images`` validation images: ``cka.csv`` and the heatmap ``cka.png``;
* ``analyze.json``: everything above.
"""

from __future__ import annotations

import csv
import io
import json
import os
from typing import Sequence

import torch
from torch.utils.data import Subset

from ..config import Config, apply_overrides, load_config
from ..data import build_datasets
from ..engine.atomic import write_text_atomic
from ..engine.distributed import DistInfo, resolve_device
from ..engine.loaders import build_val_loader
from ..engine.pipeline import BatchPipeline
from ..engine.plots import new_figure
from ..errors import ConfigError
from .cka import cka_matrix, default_layers, layer_grams
from .loading import AnalysedModel, checkpoint_config, load_model
from .spectral_eval import filter_specs, filtered_accuracy

__all__ = ["run_analyze", "default_output", "ANALYZE_FILES"]

ANALYZE_FILES = ("spectral.csv", "spectral.md", "spectral.png", "analyze.json")  # + cka.csv, cka.png with cka


def default_output(checkpoint: str) -> str:
    """Where ``etrain analyze`` writes without ``--output``: ``analysis/`` beside the first checkpoint (inside a run
    directory, or next to a checkpoint file)."""
    base = checkpoint if os.path.isdir(checkpoint) else os.path.dirname(os.path.abspath(checkpoint))
    return os.path.join(base, "analysis")


def _eval_config(paths: Sequence[str], config: str | None, overrides: Sequence[str]) -> Config:
    base = load_config(config) if config else checkpoint_config(paths[0])
    if base is None:
        base = load_config(None)  # a plain state dict: the model and data come from --set
    return apply_overrides(base, list(overrides))


def _spectral_outputs(out_dir: str, models: Sequence[AnalysedModel], specs, accs) -> list[str]:
    labels = [m.label for m in models]
    rows = [{"filter": s.name, "kind": s.kind, "radius": s.radius, **{lab: acc[s.name] for lab, acc in
                                                                      zip(labels, accs)}} for s in specs]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    write_text_atomic(os.path.join(out_dir, "spectral.csv"), buf.getvalue())
    md = ["| filter | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    md += [f"| {r['filter']} | " + " | ".join(f"{r[lab]:.2f}" for lab in labels) + " |" for r in rows]
    write_text_atomic(os.path.join(out_dir, "spectral.md"), "\n".join(md) + "\n")

    fig, axes = new_figure((6.4, 6.4), nrows=2)
    for ax, kind, title in ((axes[0], "lowpass", "low-pass: frequencies within r kept"),
                            (axes[1], "highpass", "high-pass: frequencies outside r kept")):
        for lab, acc in zip(labels, accs):
            pts = [(s.radius, acc[s.name]) for s in specs if s.kind == kind]
            if pts:
                line, = ax.plot(*zip(*pts), marker="o", label=lab)
                ax.axhline(acc["none"], ls="--", lw=1, color=line.get_color())
        ax.set_title(title + " (dashed: unfiltered)", fontsize=9)
        ax.set_xlabel("radius r (cycles per image)")
        ax.set_ylabel("top-1 (%)")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, f"no {kind} radii given", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "spectral.png"))
    print("\n".join(md))
    return [os.path.join(out_dir, n) for n in ("spectral.csv", "spectral.md", "spectral.png")]


def _cka_outputs(out_dir: str, a: AnalysedModel, b: AnalysedModel, la, lb, matrix, n: int) -> list[str]:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow([f"{a.label} \\ {b.label}"] + list(lb))
    for name, row in zip(la, matrix):
        w.writerow([name] + [f"{v:.6f}" for v in row])
    write_text_atomic(os.path.join(out_dir, "cka.csv"), buf.getvalue())
    fig, ax = new_figure((1.6 + 0.75 * len(lb), 1.4 + 0.6 * len(la)))
    im = ax.imshow(matrix, vmin=0.0, vmax=1.0, cmap="viridis")
    for i, row in enumerate(matrix):
        for j, v in enumerate(row):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="white" if v < 0.6 else "black")
    ax.set_xticks(range(len(lb)), lb, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(la)), la, fontsize=8)
    ax.set_xlabel(b.label)
    ax.set_ylabel(a.label)
    ax.set_title(f"linear CKA on {n} validation images", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "cka.png"))
    return [os.path.join(out_dir, "cka.csv"), os.path.join(out_dir, "cka.png")]


def run_analyze(paths: Sequence[str], out_dir: str | None = None, *, config: str | None = None, overrides: Sequence[str] = (),
                lowpass: Sequence[int] = (), highpass: Sequence[int] = (), cka: bool = False, cka_images: int = 512,
                cka_layers: Sequence[str] | None = None, weights: str = "model", labels: Sequence[str] | None = None,
                batch_size: int | None = None) -> dict:
    """Evaluate the checkpoints ``paths`` on the (filtered) validation set of the evaluation configuration (``config``
    or the first checkpoint's own, with ``overrides``); module docstring for the outputs, written to ``out_dir``
    (default: :func:`default_output` of the first checkpoint)."""
    if not paths:
        raise ConfigError("give at least one checkpoint")
    out_dir = out_dir if out_dir is not None else default_output(paths[0])
    if labels is not None and len(labels) != len(paths):
        raise ConfigError(f"--labels gives {len(labels)} names for {len(paths)} checkpoints")
    if cka and len(paths) < 2:
        raise ConfigError("--cka compares two models: give two checkpoints")
    if cka and cka_images < 2:
        raise ConfigError(f"--cka-images must be at least 2, got {cka_images}")
    try:
        specs = filter_specs(lowpass, highpass)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    cfg = _eval_config(paths, config, overrides)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    d = cfg.data
    data = build_datasets(d.dataset, d.root, d.final_size, crop_pct=d.crop_pct, interpolation=d.interpolation,
                          train_subset=d.train_subset, val_subset=d.val_subset, val_split=d.val_split,
                          split_seed=d.split_seed, download=d.download)
    info = DistInfo()
    device = resolve_device(cfg.train.device, info)
    models = [load_model(p, cfg, data.num_classes, weights, list(overrides), labels[i] if labels else None)
              for i, p in enumerate(paths)]
    names = [m.label for m in models]
    if len(set(names)) != len(names):
        raise ConfigError(f"checkpoint labels {names} are not distinct; give --labels")
    for m in models:
        m.model.to(device)
    batch = batch_size or cfg.train.batch_size
    loader = build_val_loader(data.val, batch, info, workers=d.workers, pin_memory=device.type == "cuda")
    accs = filtered_accuracy([m.model for m in models], loader, specs, data.mean, data.std, device,
                             progress=cfg.train.progress)
    os.makedirs(out_dir, exist_ok=True)
    written = _spectral_outputs(out_dir, models, specs, accs)
    result = {"checkpoints": [{"label": m.label, "path": m.path, "model": m.cfg.model.name} for m in models],
              "weights": weights, "final_size": d.final_size, "val_images": len(data.val),
              "spectral": {m.label: acc for m, acc in zip(models, accs)}}
    if cka:
        a, b = models[0], models[1]
        la = list(cka_layers) if cka_layers else default_layers(a.model)
        lb = list(cka_layers) if cka_layers else default_layers(b.model)
        n = min(cka_images, len(data.val))
        sub = build_val_loader(Subset(data.val, range(n)), batch, info, workers=d.workers, pin_memory=False)
        pipe = BatchPipeline(data.mean, data.std, device)
        xs = [pipe.eval(x, y)[0] for x, y, _ in sub if x.shape[0]]
        try:
            matrix = cka_matrix(layer_grams(a.model, xs, la), layer_grams(b.model, xs, lb))
        except ValueError as e:
            raise ConfigError(f"CKA: {e}") from None
        written += _cka_outputs(out_dir, a, b, la, lb, matrix, n)
        result["cka"] = {"images": n, "rows": la, "columns": lb, "matrix": matrix, "a": a.label, "b": b.label}
    write_text_atomic(os.path.join(out_dir, "analyze.json"), json.dumps(result, indent=1))
    written.append(os.path.join(out_dir, "analyze.json"))
    for p in written:
        print(f"wrote {p}")
    return result
