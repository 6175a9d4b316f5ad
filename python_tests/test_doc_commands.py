"""Every ``etrain`` command that README.md, docs/*.md and the comments of configs/ show is a command this version
accepts.

Each command (fenced code lines starting with ``etrain``, ``python -m efficienttrain_ext`` or ``torchrun ... -m
efficienttrain_ext``, and inline code spans that start with ``etrain SUBCOMMAND``) goes through the real argument
parser, and its configuration (``-c`` file, convenience flags, ``--set``) through the real, validating loader: a
required option the docs leave out, an unknown flag, a missing preset or a mistyped key fails here with the file
and the command named. Placeholders (``CKPT``, ``RUN``, ``...``, ``[OPTIONAL]``) parse as the values they stand for.
A preset's own ``--preset paper --model M`` comment must select that preset. Scripts (``bash scripts/X.sh``,
``python scripts/X.py``) and presets (``configs/...yaml``) the docs name must exist.
Training itself is run by the tests of each command (test_train, test_analysis, test_compare, test_search, ...).
"""

from __future__ import annotations

import os
import re
import shlex

import pytest

from efficienttrain_ext import cli
from efficienttrain_ext.engine.mae import MAE_DEFAULTS
from efficienttrain_ext.presets import paper_preset

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = [os.path.join(REPO, "README.md")] + sorted(
    os.path.join(REPO, "docs", f) for f in os.listdir(os.path.join(REPO, "docs")) if f.endswith(".md"))
_PLACEHOLDER = re.compile(r"[A-Z][A-Z_]*(\.yaml)?")  # CONFIG, CURRICULUM, FILE.yaml
_COMMAND = re.compile(r"(etrain|python -m efficienttrain_ext|torchrun .*?-m efficienttrain_ext) ")


def _commands() -> list[tuple[str, str]]:
    out = []
    for path in DOCS:
        text = open(path).read()
        name = os.path.relpath(path, REPO)
        for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S):
            for line in block.replace("\\\n", " ").splitlines():
                line = line.strip()
                if _COMMAND.match(line):
                    out.append((name, line))
        prose = re.sub(r"```.*?```", "", text, flags=re.S).replace("\n", " ")
        for span in re.findall(r"`([^`]+)`", prose):
            words = span.split()
            # a command, not a quoted message such as "etrain mae needs a ViT": flags, paths or PLACEHOLDERS follow
            if len(words) > 2 and words[0] == "etrain" and re.fullmatch(r"[a-z]+", words[1]) \
                    and re.match(r"-|[A-Z_0-9]+$|\S*[/.]", words[2]):
                out.append((name, span))
    for root, _, files in os.walk(os.path.join(REPO, "configs")):  # presets show their command in a comment
        for f in sorted(files):
            if f.endswith((".yaml", ".yml")):
                for line in open(os.path.join(root, f)):
                    line = line.lstrip("#").strip()
                    if _COMMAND.match(line):
                        out.append((os.path.relpath(os.path.join(root, f), REPO), line))
    return out


COMMANDS = _commands()


def _argv(command: str) -> list[str]:
    command = re.sub(r"\s#\s.*$", "", command)  # a trailing comment
    tokens = shlex.split(command)
    start = tokens.index("efficienttrain_ext") + 1 if "efficienttrain_ext" in tokens else 1
    return [t for t in tokens[start:] if t != "..." and not re.fullmatch(r"\[.*\]", t)]


def test_the_docs_show_commands():
    subcommands = {_argv(c)[0] for _, c in COMMANDS}
    # every subcommand is shown somewhere (a new one must be documented with a command)
    assert subcommands >= {"train", "schedule", "search", "compare", "analyze", "mae", "finetune", "shards", "plot"}


@pytest.mark.parametrize("where,command", COMMANDS, ids=[f"{w}:{c[:60]}" for w, c in COMMANDS])
def test_documented_command_parses_and_validates(where, command, capsys):
    argv = _argv(command)
    try:
        args = cli.build_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"{where}: `{command}` is rejected by etrain: {capsys.readouterr().err.strip()}")
    config = getattr(args, "config", None)
    placeholder = any(_PLACEHOLDER.fullmatch(str(v)) for v in (config, getattr(args, "curriculum", None)) if v)
    if config and not placeholder:
        assert os.path.exists(os.path.join(REPO, config)), f"{where}: `{command}` names {config}, which is missing"
    if getattr(args, "preset", None) and where.startswith("configs/"):  # a preset's own command selects it
        chosen = paper_preset(args.model, curriculum=args.curriculum)
        assert os.path.relpath(chosen, REPO) == where, f"{where}: `{command}` selects another preset"
    if args.command in ("train", "schedule", "search", "compare", "mae") and not getattr(args, "resume", None) \
            and not placeholder:
        cwd = os.getcwd()
        os.chdir(REPO)  # the docs' paths are relative to the repository
        try:
            if args.command == "mae":
                cli._config(args, MAE_DEFAULTS, {"mask_ratio": "mae.mask_ratio"})
            else:
                cli._config(args)
        except Exception as e:  # noqa: BLE001 - the message names the problem
            pytest.fail(f"{where}: `{command}`: its configuration does not load: {e}")
        finally:
            os.chdir(cwd)


def test_named_scripts_and_presets_exist():
    missing = []
    for path in DOCS:
        text = open(path).read()
        for ref in set(re.findall(r"(?:bash|python3?) (scripts/[\w./-]+\.(?:sh|py))", text)) \
                | set(re.findall(r"\b(configs/[\w./-]+\.ya?ml)", text)):
            if not os.path.exists(os.path.join(REPO, ref)):
                missing.append(f"{os.path.relpath(path, REPO)}: {ref}")
    assert not missing, "the docs name files that do not exist: " + "; ".join(missing)
