"""Properties of the build itself, and of the set-up scripts that make it (scripts/, buildtools/, setup.py)."""

import glob
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

import efficienttrain_ext as et
from _etrain_helpers import REPO

sys.path.insert(0, REPO)
from buildtools import cuda_arch  # noqa: E402
from buildtools.cuda_arch import ArchError, default_arch_list, parse_arch_list, resolve_arch_list  # noqa: E402
from buildtools import build_stamp  # noqa: E402
from buildtools.cuda_home import find_cuda_home  # noqa: E402


def test_library_loaded_and_ops_registered():
    assert hasattr(torch.ops.etrain, "lowfreq_crop") and hasattr(torch.ops.etrain, "lowfreq_pad")
    assert isinstance(et.built_with_cuda(), bool)


def test_cuda_kernels_present_when_gpu_present():
    if torch.cuda.is_available():
        assert et.built_with_cuda(), "a GPU is present but the library was built without CUDA kernels"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_tensor_on_cpu_only_build_raises():
    # scripts/gpu_check.sh runs this file against a FORCE_CUDA=0 build on a GPU machine.
    if et.built_with_cuda():
        pytest.skip("this build has CUDA kernels")
    x = torch.randn(2, 8, 8, device="cuda")
    with pytest.raises(RuntimeError, match="built without CUDA"):
        et.lowfreq_crop(x, 4)
    with pytest.raises(RuntimeError, match="built without CUDA"):
        torch.ops.etrain.lowfreq_pad(x, [16, 16])


# ------------------------------------------------------------------------------------- CUDA architectures
# buildtools/cuda_arch.py: what setup.py compiles the CUDA kernels for when torch cannot tell (no GPU visible).
# torch 2.14.1+cu130's torch.cuda.get_arch_list() and nvcc 13.0's --list-gpu-arch, as plain data
TORCH_CU130 = ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"]
NVCC_13 = {"75", "80", "86", "87", "88", "89", "90", "100", "103", "110", "120", "121"}


def test_parse_arch_list_forms():
    assert parse_arch_list("9.0") == ["9.0"]
    assert parse_arch_list(" 8.0;9.0a 10.0+PTX ;") == ["8.0", "9.0a", "10.0+PTX"]  # ';' or spaces, 'a', +PTX
    assert parse_arch_list("Hopper;Ampere+Tegra") == ["Hopper", "Ampere+Tegra"]  # torch's named architectures
    for bad in ("sm_90", "9", "9.0+ptx", "90", "9.0;compute_90", "8.0,9.0"):
        with pytest.raises(ArchError, match=r"are not architectures like 8\.0"):
            parse_arch_list(bad)
    for empty in ("", " ; "):
        with pytest.raises(ArchError, match="empty"):
            parse_arch_list(empty)


def test_default_arch_list_is_cut_to_torch_and_nvcc():
    assert default_arch_list(TORCH_CU130, NVCC_13) == ["8.0", "9.0", "10.0", "12.0+PTX"]
    assert default_arch_list(TORCH_CU130, None) == ["8.0", "9.0", "10.0", "12.0+PTX"]  # nvcc cannot tell: torch's
    # a torch without Blackwell (cu126 builds: sm_50 .. sm_90) -> PTX moves to the newest one kept
    assert default_arch_list(["sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"], None) == ["8.0", "9.0+PTX"]
    # an nvcc without 10.0 / 12.0 (CUDA 12.4) drops those although torch has them
    assert default_arch_list(TORCH_CU130, {"50", "60", "70", "75", "80", "86", "89", "90"}) == ["8.0", "9.0+PTX"]
    # none of the defaults available: the newest architecture both support, with PTX
    assert default_arch_list(["sm_60", "sm_70", "sm_75"], {"60", "70", "75"}) == ["7.5+PTX"]
    with pytest.raises(ArchError, match="set TORCH_CUDA_ARCH_LIST"):
        default_arch_list(["sm_60"], {"75"})


def test_resolve_arch_list_env_gpu_and_default(monkeypatch):
    monkeypatch.setattr(cuda_arch, "nvcc_archs", lambda nvcc: NVCC_13)
    logged = []
    # an explicit list is honoured (normalised to ';'), with or without a GPU, and nothing is logged
    assert resolve_arch_list("9.0 10.0+PTX", 0, TORCH_CU130, "nvcc", logged.append) == "9.0;10.0+PTX"
    assert resolve_arch_list("7.5", 2, TORCH_CU130, "nvcc", logged.append) == "7.5"
    assert resolve_arch_list("Hopper", 0, TORCH_CU130, "nvcc", logged.append) == "Hopper"
    assert logged == []
    # a GPU visible and no list: None = keep torch's choice (the visible GPUs); "native" means the same
    for env in (None, "", "native"):
        assert resolve_arch_list(env, 1, TORCH_CU130, "nvcc", logged.append) is None
    assert logged == []
    # no GPU visible and no list: the documented default, announced
    for env in (None, "", "  ", "native"):
        assert resolve_arch_list(env, 0, TORCH_CU130, "nvcc", logged.append) == "8.0;9.0;10.0;12.0+PTX"
    assert len(logged) == 4 and "8.0;9.0;10.0;12.0+PTX" in logged[0] and "TORCH_CUDA_ARCH_LIST" in logged[0]


def test_resolve_arch_list_bad_list_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(cuda_arch, "nvcc_archs", lambda nvcc: NVCC_13)
    with pytest.raises(ArchError, match=r"\['sm_90'\] are not architectures"):
        resolve_arch_list("8.0;sm_90", 0, TORCH_CU130, "nvcc")
    # well-formed but this nvcc cannot build it (a typo, or dropped by CUDA 13): named, with what nvcc can do
    with pytest.raises(ArchError, match=r"\['8\.5', '7\.0\+PTX'\] cannot be built by /x/nvcc, which targets 75, 80"):
        resolve_arch_list("8.5;9.0;7.0+PTX", 1, TORCH_CU130, "/x/nvcc")
    monkeypatch.setattr(cuda_arch, "nvcc_archs", lambda nvcc: None)  # nvcc cannot tell: only the form is checked
    assert resolve_arch_list("8.5", 0, TORCH_CU130, None) == "8.5"


def test_nvcc_archs_from_the_real_nvcc():
    assert cuda_arch.nvcc_archs(None) is None
    assert cuda_arch.nvcc_archs("/nonexistent/bin/nvcc") is None
    nvcc = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc" if os.path.exists("/usr/local/cuda/bin/nvcc") else None)
    if nvcc is None:
        pytest.skip("no nvcc on this machine")
    found = cuda_arch.nvcc_archs(nvcc)
    assert found and all(a.isdigit() for a in found), found
    assert "90" in found or "80" in found, found  # every nvcc of the last years targets Ampere / Hopper


def _cuda_toolkit_and_cuda_torch():
    from torch.utils.cpp_extension import CUDA_HOME

    return CUDA_HOME is not None and torch.version.cuda is not None, CUDA_HOME


# ------------------------------------------------------------------------------------- buildtools/cuda_home.py
def _toolkit(path):
    (path / "include").mkdir(parents=True)
    (path / "include" / "cuda_runtime.h").write_text("")
    (path / "bin").mkdir()
    (path / "bin" / "nvcc").write_text("#!/bin/sh\n")
    (path / "bin" / "nvcc").chmod(0o755)
    return path


def test_find_cuda_home_sees_through_an_nvcc_wrapper(tmp_path):
    """nvcc on PATH as a wrapper script outside the toolkit (this machine's /usr/local/bin/nvcc): torch would take
    /usr/local and fail to link -lcudart; the toolkit the wrapper runs is chosen."""
    kit = _toolkit(tmp_path / "cuda-13.0")
    (tmp_path / "bin").mkdir()
    wrapper = tmp_path / "bin" / "nvcc"
    wrapper.write_text(f'#!/bin/sh\nexec {kit}/bin/nvcc "$@"\n')
    none = str(tmp_path / "no-default")
    assert find_cuda_home({}, which=lambda _: str(wrapper), default=none) == str(kit)
    # a symlink into the toolkit, the default location, a user's setting (kept as given), nothing at all
    (tmp_path / "link").mkdir()
    os.symlink(kit / "bin" / "nvcc", tmp_path / "link" / "nvcc")
    assert find_cuda_home({}, which=lambda _: str(tmp_path / "link" / "nvcc"), default=none) == str(kit)
    assert find_cuda_home({}, which=lambda _: None, default=str(kit)) == str(kit)
    assert find_cuda_home({"CUDA_HOME": "/opt/mine"}, which=lambda _: str(wrapper)) == "/opt/mine"
    assert find_cuda_home({"CUDA_PATH": "/opt/path"}, which=lambda _: None) == "/opt/path"
    assert find_cuda_home({}, which=lambda _: None, default=none) is None
    assert find_cuda_home({}, which=lambda _: str(tmp_path / "missing" / "bin" / "nvcc"), default=none) is None


def test_setup_py_finds_the_toolkit_without_cuda_home(tmp_path):
    """setup.py with CUDA_HOME unset and only a wrapper nvcc on PATH: it sets CUDA_HOME to a real toolkit (the
    include/cuda_runtime.h check) and says so in one line."""
    if torch.version.cuda is None or not shutil.which("nvcc"):
        pytest.skip("needs nvcc on PATH and a CUDA build of torch")
    env = _build_env(CUDA_HOME=None, CUDA_PATH=None, CUDA_VISIBLE_DEVICES="")
    env.pop("CUDA_HOME", None)
    env.pop("CUDA_PATH", None)
    proc = _setup_py(tmp_path, env, "--name")
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = find_cuda_home(env)
    assert found and os.path.isfile(os.path.join(found, "include", "cuda_runtime.h"))
    assert f"CUDA_HOME not set, using the CUDA toolkit at {found}" in proc.stdout


# ------------------------------------------------------------------------------------- buildtools/build_stamp.py
def test_build_stamp_is_current_only_for_the_same_sources_and_settings(tmp_path):
    """setup_env.sh skips the (minutes-long, never incremental) editable build only when nothing it depends on
    changed: a source edit, a new file, another build setting or a missing library each need a build."""
    _copy_sources(tmp_path, ("setup.py", "buildtools", "csrc"))
    (tmp_path / "efficienttrain_ext").mkdir()
    env = {"FORCE_CUDA": "1"}
    assert not build_stamp.is_current(str(tmp_path), env)  # never built
    (tmp_path / "efficienttrain_ext" / "_C.so").write_bytes(b"lib")
    build_stamp.write(str(tmp_path), env)
    assert build_stamp.is_current(str(tmp_path), env)
    assert not build_stamp.is_current(str(tmp_path), {"FORCE_CUDA": "0"})
    assert not build_stamp.is_current(str(tmp_path), {**env, "TORCH_CUDA_ARCH_LIST": "9.0"})
    kernel = next(p for p in glob.glob(str(tmp_path / "csrc" / "**" / "*.cu"), recursive=True))
    original = open(kernel).read()
    with open(kernel, "a") as f:
        f.write("\n// edited\n")
    assert not build_stamp.is_current(str(tmp_path), env)
    with open(kernel, "w") as f:
        f.write(original)
    assert build_stamp.is_current(str(tmp_path), env)
    (tmp_path / "csrc" / "new.h").write_text("")
    assert not build_stamp.is_current(str(tmp_path), env)
    build_stamp.write(str(tmp_path), env)
    (tmp_path / "efficienttrain_ext" / "_C.so").unlink()
    assert not build_stamp.is_current(str(tmp_path), env)


def _copy_sources(tmp_path, names=("setup.py", "buildtools", "csrc", "efficienttrain_ext")):
    """What a build reads, copied without the built library and caches."""
    for name in names:
        src = os.path.join(REPO, name)
        if os.path.isdir(src):
            shutil.copytree(src, tmp_path / name, ignore=shutil.ignore_patterns("_C*.so", "__pycache__"))
        else:
            shutil.copy(src, tmp_path)


def _build_env(**set_vars):
    """The environment of a build: none of the build variables unless given (None removes one)."""
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_CUDA", "TORCH_CUDA_ARCH_LIST")}
    env.update({k: v for k, v in set_vars.items() if v is not None})
    return env


def _setup_py(tmp_path, env, *args, timeout=300):
    """Run setup.py from a copy holding only setup.py + buildtools (enough to evaluate its extension choice)."""
    shutil.copy(os.path.join(REPO, "setup.py"), tmp_path)
    shutil.copytree(os.path.join(REPO, "buildtools"), tmp_path / "buildtools")
    return subprocess.run([sys.executable, "setup.py", *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_setup_py_without_gpu_and_arch_list_chooses_default_archs(tmp_path):
    """The fresh-machine trap: no GPU visible, no TORCH_CUDA_ARCH_LIST. setup.py must choose (torch itself dies
    with an IndexError), and torch's flag builder must accept what it chose."""
    ok, cuda_home = _cuda_toolkit_and_cuda_torch()
    if not ok:
        pytest.skip("needs nvcc and a CUDA build of torch (otherwise setup.py builds CPU-only)")
    nvcc = cuda_arch.nvcc_archs(os.path.join(cuda_home, "bin", "nvcc"))
    expected = ";".join(default_arch_list(torch.cuda.get_arch_list(), nvcc))
    proc = _setup_py(tmp_path, _build_env(CUDA_VISIBLE_DEVICES=""), "--name")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"building the CUDA kernels for {expected} " in proc.stdout, proc.stdout
    if {"sm_80", "sm_90", "sm_100", "sm_120"} <= set(torch.cuda.get_arch_list()) and \
            {"80", "90", "100", "120"} <= (nvcc or set()):  # torch 2.14 cu130 + nvcc 13: the README's default
        assert expected == "8.0;9.0;10.0;12.0+PTX"
    from torch.utils import cpp_extension

    old = os.environ.get("TORCH_CUDA_ARCH_LIST")
    os.environ["TORCH_CUDA_ARCH_LIST"] = expected
    try:
        flags = cpp_extension._get_cuda_arch_flags()
    finally:
        if old is None:
            del os.environ["TORCH_CUDA_ARCH_LIST"]
        else:
            os.environ["TORCH_CUDA_ARCH_LIST"] = old
    for arch in expected.replace("+PTX", "").split(";"):
        num = arch.replace(".", "")
        assert f"-gencode=arch=compute_{num},code=sm_{num}" in flags, flags
    last = expected.split(";")[-1].replace("+PTX", "").replace(".", "")
    assert f"-gencode=arch=compute_{last},code=compute_{last}" in flags  # PTX of the newest, for newer GPUs


def test_setup_py_bad_arch_list_is_a_clear_error(tmp_path):
    ok, _ = _cuda_toolkit_and_cuda_torch()
    if not ok:
        pytest.skip("needs nvcc and a CUDA build of torch (otherwise setup.py builds CPU-only)")
    proc = _setup_py(tmp_path, _build_env(TORCH_CUDA_ARCH_LIST="9.0;sm_100"), "--name")
    assert proc.returncode != 0
    assert "efficienttrain_ext: TORCH_CUDA_ARCH_LIST entries ['sm_100'] are not architectures" in proc.stderr, \
        proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr  # one line, not a stack from deep inside torch


def test_setup_py_bad_force_cuda_is_a_clear_error(tmp_path):
    proc = _setup_py(tmp_path, _build_env(FORCE_CUDA="yes"), "--name")
    assert proc.returncode != 0 and "FORCE_CUDA must be 0 or 1, got 'yes'" in proc.stderr, proc.stderr[-3000:]


def test_default_build_has_cuda_kernels_when_nvcc_and_cuda_torch_present():
    """With nvcc and a CUDA torch, the default build (FORCE_CUDA unset) compiles the CUDA kernels, so CI (no GPU)
    still fails on a CUDA compile error instead of quietly building CPU-only."""
    if os.environ.get("FORCE_CUDA") == "0":
        pytest.skip("FORCE_CUDA=0: a CPU-only build was asked for")
    ok, cuda_home = _cuda_toolkit_and_cuda_torch()
    if not ok:
        pytest.skip("no nvcc or a CPU-only torch: the default build is CPU-only")
    assert et.built_with_cuda(), (
        f"nvcc ({cuda_home}) and torch {torch.__version__} (CUDA {torch.version.cuda}) are present but the library "
        "was built without CUDA kernels (built with FORCE_CUDA=0? then run the tests with FORCE_CUDA=0 too)")


def test_setup_py_force_cuda_0_builds_a_cpu_library(tmp_path):
    """FORCE_CUDA=0 builds the C++ ops only, never touching CUDA (a nonsense TORCH_CUDA_ARCH_LIST is not even read),
    and that library computes what the main build computes on CPU tensors."""
    _copy_sources(tmp_path)
    env = _build_env(FORCE_CUDA="0", TORCH_CUDA_ARCH_LIST="not-an-arch", MAX_JOBS=os.environ.get("MAX_JOBS", "2"))
    proc = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=1800)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    cu_sources = [os.path.basename(p) for p in glob.glob(os.path.join(REPO, "csrc", "**", "*.cu"), recursive=True)]
    assert cu_sources and not [c for c in cu_sources if c in out] and "nvcc" not in out, out[-5000:]

    x = torch.randn(3, 2, 16, 16, generator=torch.Generator().manual_seed(0))
    torch.save(x, tmp_path / "x.pt")
    code = ("import json, sys, torch, efficienttrain_ext as et; x = torch.load('x.pt'); "
            "torch.save(et.lowfreq_crop(x, 8), 'y.pt'); "
            "print(json.dumps({'file': et.__file__, 'cuda': et.built_with_cuda()}))")
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert run.returncode == 0, run.stderr[-3000:]
    info = json.loads(run.stdout.strip().splitlines()[-1])
    assert info["file"].startswith(str(tmp_path)), info  # the copy was imported, not the main build
    assert info["cuda"] is False
    assert torch.equal(torch.load(tmp_path / "y.pt"), et.lowfreq_crop(x, 8))



def _setup_env_install_args():
    """The flags scripts/setup_env.sh passes to `pip install ... -e .` (the line that builds the extension)."""
    lines = [ln.split() for ln in open(os.path.join(REPO, "scripts", "setup_env.sh"))
             if ln.strip().startswith(".venv/bin/pip install") and ln.rstrip().endswith("-e .")]
    assert len(lines) == 1, "setup_env.sh should build the extension with one `pip install ... -e .` line"
    return lines[0][1:]


def test_setup_env_editable_install_builds_in_place(tmp_path):
    """setup_env.sh's own editable-install command, run on a copy into a separate prefix: it must build through
    setuptools' PEP 660 hook with the environment's torch (no isolated build env, where torch is missing, which is
    where `setup.py develop` ends up under setuptools >= 80) and leave an importable _C in the source tree."""
    args = _setup_env_install_args()
    assert "--no-build-isolation" in args and "--use-pep517" in args, args
    _copy_sources(tmp_path)
    env = _build_env(FORCE_CUDA="0", MAX_JOBS=os.environ.get("MAX_JOBS", "2"), PIP_NO_INDEX="1")
    # --ignore-installed: into the prefix, without uninstalling the environment's own efficienttrain_ext first
    proc = subprocess.run([sys.executable, "-m", "pip", *args, "--ignore-installed", "--prefix",
                           str(tmp_path / "prefix")], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    assert glob.glob(str(tmp_path / "efficienttrain_ext" / "_C*.so")), "the extension was not built in place"
    run = subprocess.run([sys.executable, "-c", "import efficienttrain_ext as et; print(et.__file__)"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert run.returncode == 0 and run.stdout.strip().startswith(str(tmp_path)), run.stdout + run.stderr[-3000:]


# ------------------------------------------------------------------------------------- set-up scripts
# The scripts take interpreter / output paths from the caller and cd elsewhere: a relative path must keep meaning
# what it meant in the caller's directory (scripts/abs_path.sh).
FAKE_PYTHON = '''#!{real}
"""A stand-in interpreter: logs each call; pip calls are simulated, everything else runs on the real python."""
import json, os, sys, tarfile
argv = sys.argv[1:]
with open(os.environ["FAKE_PY_LOG"], "a") as f:
    f.write(json.dumps({{"cwd": os.getcwd(), "argv": argv}}) + "\\n")
if argv[:2] == ["-m", "pip"]:
    if argv[2] == "download":  # an sdist with the C++ standard flags mmcv 2.1.0 hard-codes
        d = argv[argv.index("-d") + 1]
        os.makedirs(os.path.join(d, "mmcv-2.1.0"))
        with open(os.path.join(d, "mmcv-2.1.0", "setup.py"), "w") as f:
            f.write("args = ['-std=c++14']\\nmore = ['-std=c++17']\\n")
        with tarfile.open(os.path.join(d, "mmcv-2.1.0.tar.gz"), "w:gz") as t:
            t.add(os.path.join(d, "mmcv-2.1.0"), "mmcv-2.1.0")
    elif argv[2] == "wheel":  # run where the real build runs: in the unpacked, patched sdist
        src = open("setup.py").read()
        if "c++14" in src or "c++17" in src or src.count("-std=c++20") != 2:
            sys.exit("setup.py not patched: " + src)
        w = argv[argv.index("-w") + 1]
        os.makedirs(w, exist_ok=True)
        open(os.path.join(w, "mmcv-2.1.0-cp311-cp311-linux_x86_64.whl"), "wb").write(b"wheel")
    sys.exit(0)
if argv[:1] == ["-"]:  # install_detection.sh's "already installed?" probe: no
    sys.exit(1)
if argv[:1] == ["-c"] and "import mmcv" in argv[1]:
    sys.exit(0)
if argv[:2] == ["-m", "efficienttrain_ext.cli"]:  # demo.sh's etrain calls
    sys.exit(0)
os.execv(sys.executable, [sys.executable] + argv)
'''


def _fake_python(directory, name="python"):
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(FAKE_PYTHON.format(real=sys.executable))
    path.chmod(0o755)
    return path


def _calls(log):
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_abs_path_helpers(tmp_path):
    (tmp_path / "sub").mkdir()
    script = (f'. {os.path.join(REPO, "scripts", "abs_path.sh")}; abs_python venv/bin/python; abs_python ./py; '
              'abs_python /opt/py; abs_path ../cache; abs_python bash; abs_python no-such-python-here')
    proc = subprocess.run(["bash", "-c", script], cwd=tmp_path / "sub", capture_output=True, text=True)
    sub = str(tmp_path / "sub")
    assert proc.stdout.splitlines() == [f"{sub}/venv/bin/python", f"{sub}/py", "/opt/py", f"{sub}/../cache",
                                        shutil.which("bash")]
    assert proc.returncode == 1 and "interpreter 'no-such-python-here' not found on PATH" in proc.stderr


def test_install_detection_with_relative_python_from_another_directory(tmp_path):
    """Regression: PYTHON=.venv/bin/python (as scripts/test.sh passed it) broke once the mmcv build cd'd into the
    unpacked sdist. Relative PYTHON, cache and TMPDIR, called from outside the repo; pip is simulated."""
    _fake_python(tmp_path / "venv" / "bin")
    (tmp_path / "tmp").mkdir()
    log = tmp_path / "calls.jsonl"
    env = dict(os.environ, PYTHON="venv/bin/python", ETRAIN_CACHE="cache", TMPDIR="tmp", FAKE_PY_LOG=str(log))
    script = os.path.join(REPO, "scripts", "install_detection.sh")
    proc = subprocess.run(["bash", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    wheels = glob.glob(str(tmp_path / "cache" / "wheels" / "mmcv-2.1.0_*_cpuops" / "mmcv-2.1.0-*.whl"))
    assert len(wheels) == 1, proc.stdout
    calls = _calls(log)
    builds = [c for c in calls if c["argv"][:3] == ["-m", "pip", "wheel"]]
    assert len(builds) == 1 and os.path.basename(builds[0]["cwd"]) == "mmcv-2.1.0"
    installs = [c["argv"] for c in calls if c["argv"][:3] == ["-m", "pip", "install"]]
    assert ["-m", "pip", "install", "-q", "--no-deps", wheels[0]] in installs
    assert not os.listdir(tmp_path / "tmp")  # the build directory is removed

    # second run, the interpreter given as a bare name on PATH: the cached wheel is reused, nothing is built
    _fake_python(tmp_path / "bin", "fakepython3")
    log.unlink()
    env.update(PYTHON="fakepython3", PATH=f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run(["bash", script], cwd=tmp_path / "tmp", env=dict(env, ETRAIN_CACHE=str(tmp_path / "cache")),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "reusing cached wheel" in proc.stdout
    assert not [c for c in _calls(log) if c["argv"][:3] in (["-m", "pip", "wheel"], ["-m", "pip", "download"])]


def test_demo_sh_with_relative_paths_from_another_directory(tmp_path):
    """demo.sh cd's to the repo: a caller's relative ETRAIN_PYTHON and OUT keep pointing where the caller meant."""
    _fake_python(tmp_path / "venv" / "bin")
    log = tmp_path / "calls.jsonl"
    env = dict(os.environ, ETRAIN_SKIP_SETUP="1", ETRAIN_PYTHON="venv/bin/python", OUT="out/demo",
               FAKE_PY_LOG=str(log))
    proc = subprocess.run(["bash", os.path.join(REPO, "scripts", "demo.sh"), "--set", "train.epochs=1"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = str(tmp_path / "out" / "demo")
    calls = [c for c in _calls(log) if c["argv"][:2] == ["-m", "efficienttrain_ext.cli"]]
    assert [c["argv"][2] for c in calls] == ["compare"]
    assert os.path.samefile(calls[0]["cwd"], REPO)
    assert calls[0]["argv"][3:] == ["-c", "configs/fashion_mnist_demo.yaml", "--curricula",
                                    "efficienttrain,none,none@cost=efficienttrain", "--seeds", "0", "--output", out,
                                    "--set", "train.epochs=1"]


# ------------------------------------------------------------------------------------- demo output check
def _fake_demo_outputs(out, epochs=2):
    """What a finished scripts/demo.sh leaves (the file set scripts/check_demo_outputs.py checks), and its log."""
    import yaml

    sys.path.insert(0, os.path.join(REPO, "scripts"))
    import check_demo_outputs as chk

    for run, curriculum in chk.RUNS.items():
        d = out / run
        d.mkdir(parents=True)
        for name in chk.RUN_FILES:
            (d / name).write_text("x")
        (d / "config.yaml").write_text(yaml.safe_dump({"train": {"epochs": epochs}}))
        rows = [{"epoch": e, "top1": 10.0 * e} for e in range(1, epochs + 1)]
        (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (d / "summary.json").write_text(json.dumps({"final": rows[-1], "curriculum": curriculum}))
    labels = list(dict.fromkeys(run.split("/")[0] for run in chk.RUNS))
    for name in chk.TABLES:
        (out / name).write_text("x")
    (out / "compare.json").write_text(json.dumps({"curricula": [{"curriculum": c, "seeds": 1, "of": 1,
                                                                 "top1_mean": 20.0} for c in labels]}))
    for name in chk.PLOTS:
        (out / name).write_bytes(chk.PNG_MAGIC + bytes(4096))
    table = ["| curriculum | seeds | epochs | B | top-1 (%) | EMA top-1 (%) | train time (s) | measured | cpu | "
             "predicted |", "|" + "---|" * 10]
    table += [f"| {c} | 1/1 | 2 | 64 | 20.00 | 20.00 | 10 | 1.000 | 1.000 | 1.000 |" for c in labels]
    log = out.parent / "demo.log"
    log.write_text("compare: [1/3] ...\nwrote x.png\n" + "\n".join(table) + "\n\nmean ± sample std ...\n")
    return chk, log


def test_check_demo_outputs_accepts_a_finished_demo_and_names_what_is_missing(tmp_path):
    out = tmp_path / "runs" / "demo"
    chk, log = _fake_demo_outputs(out)
    script = os.path.join(REPO, "scripts", "check_demo_outputs.py")

    def check():
        return subprocess.run([sys.executable, script, "--out", str(out), "--log", str(log)], capture_output=True,
                              text=True, timeout=120)

    proc = check()
    assert proc.returncode == 0 and "demo outputs: ok" in proc.stdout, proc.stdout + proc.stderr

    def fails_with(match):
        proc = check()
        assert proc.returncode == 1 and match in proc.stderr, proc.stdout + proc.stderr

    log_text = log.read_text()
    log.write_text(log_text.replace("| none | 1/1", "| something else | 1/1"))
    fails_with("comparison table has no row for none ")
    log.write_text(log_text.replace("| none@cost=efficienttrain | 1/1 | 2 | 64 | 20.00", "| none@cost=efficienttrain"
                                    " | 1/1 | 2 | 64 | -"))
    fails_with("comparison row of none@cost=efficienttrain has no top-1")
    log.write_text("compare: [1/3] ...\n")
    fails_with("no comparison table")
    log.write_text(log_text)
    compare_json = (out / "compare.json").read_text()
    (out / "compare.json").write_text(compare_json.replace('"seeds": 1, "of": 1, "top1_mean": 20.0}]',
                                                           '"seeds": 0, "of": 1, "top1_mean": null}]'))
    fails_with("compare.json: none@cost=efficienttrain has 0 of 1 seeds finished")
    (out / "compare.json").write_text(compare_json)
    (out / "runs.csv").unlink()
    fails_with("missing or empty")
    (out / "runs.csv").write_text("x")

    base = out / "none" / "seed0"
    summary = (base / "summary.json").read_text()
    (base / "summary.json").unlink()  # the baseline run did not finish
    fails_with("none/seed0: missing or empty summary.json")
    (base / "summary.json").write_text(summary)
    metrics = (base / "metrics.jsonl").read_text()
    (base / "metrics.jsonl").write_text(metrics.splitlines()[0] + "\n")  # stopped after epoch 1 of 2
    fails_with("metrics.jsonl has epochs [1], the run was configured for 2")
    (base / "metrics.jsonl").write_text(metrics)
    (base / "summary.json").write_text(summary.replace('"none"', '"efficienttrain"'))  # not the baseline
    fails_with("trained with curriculum 'efficienttrain', expected 'none'")
    (base / "summary.json").write_text(summary)
    for name in chk.PLOTS:  # plotted after the runs finished (rewriting summary.json made them look stale)
        os.utime(out / name)
    assert check().returncode == 0
    os.utime(out / "schedules.png", (1, 1))  # left from an earlier demo
    fails_with("schedules.png is older than the runs")
    (out / "schedules.png").write_bytes(b"not a png" * 1000)
    fails_with("schedules.png is not a plot")
    (out / "accuracy_vs_time.png").unlink()
    fails_with("missing plot")
