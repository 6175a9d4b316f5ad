"""The package's structure: layers, no import cycles, no function-level imports, documented names, errors.

The import graph is read from the source (ast), not from sys.modules, so the test sees every module-level import
of every module whether or not something imported it.
"""

from __future__ import annotations

import ast
import importlib
import os
import re

import pytest

import efficienttrain_ext
from efficienttrain_ext import errors

PKG_DIR = os.path.dirname(efficienttrain_ext.__file__)
REPO = os.path.dirname(PKG_DIR)

# Layer of each top-level part: a module may import only parts of its own layer or lower ones.
LAYERS = {
    "errors": 0, "_C": 0,
    "ops": 1, "models": 1,
    "augment": 2,
    "curriculum": 3, "data": 3,
    "config": 4, "presets": 4,
    "engine": 5, "search": 5, "analysis": 5,
    "integrations": 6,
    "cli": 7, "__main__": 8,
}
# optional dependencies may be imported inside the function that needs them
OPTIONAL = {"torch.utils.tensorboard", "nvidia", "webdataset", "braceexpand", "lightning", "pytorch_lightning", "mmdet", "mmengine",
            "mmcv", "scipy", "sklearn", "skimage", "triton"}


def _modules() -> dict[str, str]:
    out = {}
    for root, _, files in os.walk(PKG_DIR):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(root, f)
                rel = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
                out[rel.removesuffix(".__init__")] = path
    return out


def _resolve(module: str, is_pkg: bool, node: ast.ImportFrom, modules) -> list[str]:
    """What ``from X import a, b`` in ``module`` loads: the submodules a, b of X when they are modules, else X."""
    if node.level == 0:
        base = node.module or ""
    else:
        parts = module.split(".")
        parts = parts if is_pkg else parts[:-1]
        parts = parts[: len(parts) - (node.level - 1)]
        base = ".".join(parts + ([node.module] if node.module else []))
    out = []
    for a in node.names:
        sub = f"{base}.{a.name}"
        if sub == "efficienttrain_ext._C":
            continue  # the compiled extension: no Python imports behind it
        out.append(sub if sub in modules else base)
    return out


def _imports(modules: dict[str, str]) -> dict[str, list[tuple[str, int, bool]]]:
    """module -> [(imported efficienttrain_ext module, line, at module level)]."""
    graph = {}
    for mod, path in modules.items():
        tree = ast.parse(open(path).read(), path)
        top_level = {id(n) for n in tree.body} | {id(n) for n in ast.walk(tree) if isinstance(n, (ast.If, ast.Try))
                                                  and n in tree.body}
        found = []
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = _resolve(mod, path.endswith("__init__.py"), node, modules)
            for name in names:
                found.append((name, node.lineno, id(node) in top_level))
        graph[mod] = found
    return graph


MODULES = _modules()
GRAPH = _imports(MODULES)


def _internal(name: str) -> str | None:
    """The package module ``name`` refers to (a module, or the module holding an imported attribute)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def test_no_import_cycles():
    edges = {m: sorted({t for n, _, top in GRAPH[m] if top and (t := _internal(n)) and t != m}) for m in MODULES}
    # a package's __init__ importing its own submodules is how packages work; the submodules importing the package
    # back is the cycle that matters, so keep both directions
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in edges[m]:
            if state.get(t) == 1:
                cycle = stack[stack.index(t):] + [t]
                # a submodule importing a sibling through its package's __init__ is not a cycle of code
                if not all(a.startswith(b + ".") or b.startswith(a + ".") for a, b in zip(cycle, cycle[1:])):
                    raise AssertionError("import cycle: " + " -> ".join(cycle))
            elif state.get(t) is None:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(MODULES):
        if m not in state:
            visit(m)


def test_dependencies_point_one_way():
    bad = []
    for m in MODULES:
        part = m.split(".")[1] if m != "efficienttrain_ext" else None
        if part is None:
            continue
        for name, line, _ in GRAPH[m]:
            t = _internal(name)
            if t is None or t == "efficienttrain_ext":
                continue
            target = t.split(".")[1]
            if LAYERS[target] > LAYERS[part]:
                bad.append(f"{m}:{line} imports {t} ({part} is layer {LAYERS[part]}, {target} is {LAYERS[target]})")
    assert not bad, "\n".join(bad)


def test_every_part_has_a_layer():
    parts = {m.split(".")[1] for m in MODULES if m != "efficienttrain_ext"}
    assert parts <= set(LAYERS), parts - set(LAYERS)


def test_no_function_level_imports_except_optional_dependencies():
    bad = [f"{m}:{line} imports {name}" for m in MODULES for name, line, top in GRAPH[m]
           if not top and not any(name == o or name.startswith(o + ".") for o in OPTIONAL)]
    assert not bad, "\n".join(bad)


def test_every_module_imports():
    for m in sorted(MODULES):
        if m.endswith("__main__"):
            continue
        importlib.import_module(m)


def _documented_names() -> set[str]:
    """Dotted efficienttrain_ext names the README and docs/ show in code (imports and attribute uses)."""
    names = set()
    for path in [os.path.join(REPO, "README.md")] + [os.path.join(REPO, "docs", f)
                                                     for f in os.listdir(os.path.join(REPO, "docs"))]:
        if not path.endswith(".md"):
            continue
        text = open(path).read()
        for mod, items in re.findall(r"from (efficienttrain_ext[\w.]*) import ([\w, ()]+)", text):
            for item in re.split(r",", items.strip("() ")):
                item = item.split(" as ")[0].strip(" ()\n")
                if item:
                    names.add(f"{mod}.{item}")
        for mod in re.findall(r"import (efficienttrain_ext[\w.]*)", text):
            names.add(mod)
        names |= set(re.findall(r"`(efficienttrain_ext(?:\.\w+)+)`", text))
    return names


def test_documented_names_import():
    missing = []
    for dotted in sorted(_documented_names()):
        obj, parts = None, dotted.split(".")
        for i in range(len(parts), 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:i]))
            except ImportError:
                continue
            for attr in parts[i:]:
                obj = getattr(obj, attr, None)
            break
        if obj is None:
            missing.append(dotted)
    assert not missing, f"documented but not importable: {missing}"


def test_readme_names_exist():
    import efficienttrain_ext as et
    from efficienttrain_ext.augment import RandAugment, RandAugmentTransform, from_timm_string, functional  # noqa
    from efficienttrain_ext.curriculum import plan  # noqa

    for name in ("lowfreq_crop", "lowfreq_pad", "lowpass", "built_with_cuda"):
        assert callable(getattr(et, name))


def test_errors_share_one_base_and_keep_their_builtin_kind():
    for cls in (errors.ConfigError, errors.ScheduleError, errors.SearchError):
        assert issubclass(cls, errors.EtrainError) and issubclass(cls, ValueError)
    for cls in (errors.DataError, errors.CheckpointError, errors.TrainError):
        assert issubclass(cls, errors.EtrainError) and issubclass(cls, RuntimeError)


def test_readme_layout_table_matches_the_tree():
    text = open(os.path.join(REPO, "README.md")).read()
    table = text[text.index("## Layout"):]
    paths = re.findall(r"^\| `([^`]+)`", table, flags=re.M)
    assert paths, "README has no layout table"
    for p in paths:
        for one in p.split(", "):
            assert os.path.exists(os.path.join(REPO, one.rstrip("/"))), f"README layout names {one}, which is missing"
    for part in sorted({m.split(".")[1] for m in MODULES if m != "efficienttrain_ext"} - {"_C", "__main__"}):
        is_dir = os.path.isdir(os.path.join(PKG_DIR, part))
        shown = f"efficienttrain_ext/{part}/" if is_dir else f"efficienttrain_ext/{part}.py"
        assert shown in table, f"README layout table does not list {shown}"


# torch.distributed's collectives (and DDP, which runs them): only engine/collectives.py calls them, each on the group
# whose backend takes the tensor's device (issue: an epoch-end all-reduce of a CPU tensor over NCCL's default group)
COLLECTIVE_CALLS = {"all_reduce", "all_gather", "all_gather_object", "all_gather_into_tensor", "broadcast",
                    "broadcast_object_list", "barrier", "monitored_barrier", "reduce", "reduce_scatter",
                    "reduce_scatter_tensor", "all_to_all", "all_to_all_single", "gather", "gather_object", "scatter",
                    "scatter_object_list", "send", "recv", "isend", "irecv", "new_group", "DistributedDataParallel"}
COLLECTIVES_MODULE = "efficienttrain_ext.engine.collectives"


def _distributed_aliases(tree: ast.AST) -> tuple[set[str], set[str]]:
    """Names bound to torch.distributed (``import torch.distributed as dist``) and collective functions imported
    from it by name (``from torch.distributed import all_reduce``)."""
    modules, functions = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name == "torch.distributed" and a.asname:
                    modules.add(a.asname)
        elif isinstance(node, ast.ImportFrom) and ((node.module or "").startswith("torch.distributed")
                                                   or node.module in ("torch", "torch.nn.parallel")):
            functions |= {a.asname or a.name for a in node.names if a.name in COLLECTIVE_CALLS}
            modules |= {a.asname or a.name for a in node.names if a.name == "distributed"}
    return modules, functions


def _collective_calls(path: str) -> list[str]:
    tree = ast.parse(open(path).read(), path)
    modules, functions = _distributed_aliases(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Name) and f.id in functions:
            found.append(f"{node.lineno}: {f.id}()")
        elif isinstance(f, ast.Attribute) and f.attr in COLLECTIVE_CALLS:
            owner = ast.unparse(f.value)
            if owner in modules or owner == "torch.distributed" or owner.endswith(".distributed"):
                found.append(f"{node.lineno}: {owner}.{f.attr}()")
    return found


def test_only_the_collectives_module_calls_torch_distributed_collectives():
    bad = [f"{m}:{call}" for m in MODULES if m != COLLECTIVES_MODULE for call in _collective_calls(MODULES[m])]
    assert not bad, "call these through engine/collectives.py (Collectives):\n" + "\n".join(bad)
    assert _collective_calls(MODULES[COLLECTIVES_MODULE])  # the check sees real calls


def test_the_collective_check_finds_each_spelling(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("import torch\nimport torch.distributed as dist\nfrom torch.distributed import all_gather_object"
                   " as ago\nfrom torch.nn.parallel import DistributedDataParallel\nfrom torch import distributed\n"
                   "dist.all_reduce(x)\ntorch.distributed.barrier()\nago(o, x)\nDistributedDataParallel(m)\n"
                   "distributed.broadcast(x, 0)\ndist.get_rank()\n")
    assert [c.split(":")[0] for c in _collective_calls(str(src))] == ["6", "7", "8", "9", "10"]
