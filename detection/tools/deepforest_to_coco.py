#!/usr/bin/env python
"""Convert the box annotations shipped in the ``deepforest`` wheel (NEON aerial RGB photos, MIT) to COCO json.

    python detection/tools/deepforest_to_coco.py -o data/deepforest_coco [--wheel-dir ~/.cache/efficienttrain_ext/deepforest]

Fetches the wheel with ``pip download --no-deps deepforest`` into the cache directory when it is not there, reads
``deepforest/data/*.csv`` + images from the wheel by path (deepforest itself is never imported), and writes
``<out>/images/*.png`` and ``<out>/annotations.json`` (3 images, 177 boxes, categories Tree/Dead/Alive).
"""

from __future__ import annotations

import argparse
import csv
import glob
import io
import json
import os
import subprocess
import sys
import zipfile

# csv file -> the image it annotates (as shipped in deepforest/data/)
SOURCES = {
    "testfile_deepforest.csv": "OSBS_029.png",
    "example.csv": "2019_YELL_2_541000_4977000_image_crop.png",
    "testfile_multi.csv": "SOAP_061.png",
}
DEFAULT_CACHE = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")),
                             "efficienttrain_ext", "deepforest")


def find_wheel(wheel_dir: str, download: bool = True) -> str:
    wheels = sorted(glob.glob(os.path.join(wheel_dir, "deepforest-*.whl")))
    if not wheels and download:
        os.makedirs(wheel_dir, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:",
                        "deepforest", "-d", wheel_dir], check=True)
        wheels = sorted(glob.glob(os.path.join(wheel_dir, "deepforest-*.whl")))
    if not wheels:
        raise FileNotFoundError(f"no deepforest wheel in {wheel_dir} (pip download --no-deps deepforest -d ...)")
    return wheels[-1]


def convert(wheel: str, out: str) -> dict:
    from PIL import Image

    os.makedirs(os.path.join(out, "images"), exist_ok=True)
    images, annotations, cats = [], [], {}
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        for csv_name, img_name in SOURCES.items():
            csv_path, img_path = f"deepforest/data/{csv_name}", f"deepforest/data/{img_name}"
            if csv_path not in names or img_path not in names:
                raise FileNotFoundError(f"{wheel} lacks {csv_path} or {img_path}")
            data = zf.read(img_path)
            with Image.open(io.BytesIO(data)) as im:
                im = im.convert("RGB")
                w, h = im.size
                im.save(os.path.join(out, "images", img_name))
            img_id = len(images) + 1
            images.append({"id": img_id, "file_name": img_name, "width": w, "height": h})
            rows = list(csv.DictReader(io.StringIO(zf.read(csv_path).decode("utf-8"))))
            for r in rows:
                if os.path.basename(r["image_path"]) != img_name:
                    continue
                x0, y0, x1, y1 = (float(r[k]) for k in ("xmin", "ymin", "xmax", "ymax"))
                x0, y0, x1, y1 = max(0.0, x0), max(0.0, y0), min(float(w), x1), min(float(h), y1)
                if x1 <= x0 or y1 <= y0:
                    continue
                label = r["label"]
                cid = cats.setdefault(label, len(cats) + 1)
                annotations.append({"id": len(annotations) + 1, "image_id": img_id, "category_id": cid,
                                    "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0),
                                    "iscrowd": 0,
                                    "segmentation": [[x0, y0, x1, y0, x1, y1, x0, y1]]})
    coco = {"info": {"description": f"deepforest sample data ({os.path.basename(wheel)}), NEON, MIT"},
            "licenses": [], "images": images, "annotations": annotations,
            "categories": [{"id": i, "name": n, "supercategory": "tree"} for n, i in cats.items()]}
    with open(os.path.join(out, "annotations.json"), "w") as f:
        json.dump(coco, f)
    return coco


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-o", "--out", required=True, help="output directory")
    p.add_argument("--wheel-dir", default=DEFAULT_CACHE, help="where the deepforest wheel is (or goes)")
    p.add_argument("--no-download", action="store_true")
    a = p.parse_args(argv)
    coco = convert(find_wheel(a.wheel_dir, not a.no_download), a.out)
    print(f"wrote {a.out}/annotations.json: {len(coco['images'])} images, {len(coco['annotations'])} boxes, "
          f"categories {[c['name'] for c in coco['categories']]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
