"""scripts/demo_lowfreq.py: main() writes a readable side-by-side PNG (small size, so it runs in seconds)."""

import importlib.util
import os

import numpy as np
import pytest
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load_demo():
    spec = importlib.util.spec_from_file_location("demo_lowfreq", os.path.join(REPO, "scripts", "demo_lowfreq.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("image,bands", [("astronaut", ["16", "32"]), ("chelsea", ["15", "24", "64"])])
def test_demo_writes_png(tmp_path, capsys, image, bands):
    demo = _load_demo()
    out = tmp_path / "sub" / "demo.png"
    written = demo.main(["--image", image, "--size", "64", "--bands", *bands, "--out", str(out), "--dpi", "50"])
    assert written == str(out) and out.is_file()
    with Image.open(out) as im:
        im.verify()  # a complete, valid PNG
    with Image.open(out) as im:
        assert im.format == "PNG"
        w, h = im.size
        # 4 panels of 3.6 in per row, 1 + len(bands) rows of 3.75 in, at 50 dpi
        assert abs(w - 4 * 3.6 * 50) <= 2 and abs(h - (1 + len(bands)) * 3.75 * 50) <= 2
        assert len(np.unique(np.asarray(im.convert("L")))) > 50  # not blank
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed
    for b in bands:
        assert f"\n{int(b):>5} " in printed  # one line of numbers per band


def test_demo_rejects_bad_band(tmp_path):
    demo = _load_demo()
    with pytest.raises(SystemExit):
        demo.main(["--size", "32", "--bands", "64", "--out", str(tmp_path / "x.png")])
