"""labelme 6.3.1's ``labelme2voc.py`` example, class masks only, as a script to time.

Our own rewrite of what the example does when run with ``--noobject --nonpy --noviz``
(the example is not shipped in the wheel): read ``labels.txt`` (``__ignore__`` → -1,
``_background_`` → 0, then classes in file order), write ``class_names.txt``, and for
every ``*.json`` in the input folder load it with ``labelme.LabelFile`` (which reads
the image and applies its EXIF orientation), write its image bytes as the JPEG, decode
it, rasterize with ``labelme.utils.shapes_to_label`` and save the class mask with
``imgviz.io.lblsave`` (palette PNG, ``__ignore__`` as 255). ``benchmarks/convert.py --whole-process``
runs it as a subprocess, so its import time counts, as it does for a user.

    python benchmarks/labelme2voc_reference.py INPUT_DIR OUTPUT_DIR --labels labels.txt
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def main() -> None:
    """Convert INPUT_DIR's labelme files into OUTPUT_DIR (which must not exist)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input_dir", type=Path)
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--labels", type=Path, required=True)
    args = parser.parse_args()

    import imgviz
    import labelme
    import numpy as np
    from loguru import logger

    logger.disable("labelme")  # a DEBUG line per image otherwise; the example prints less
    if args.output_dir.exists():
        sys.exit(f"output folder exists: {args.output_dir}")
    for name in ("JPEGImages", "SegmentationClass"):
        (args.output_dir / name).mkdir(parents=True)

    name_to_id: dict[str, int] = {}
    names: list[str] = []
    for number, line in enumerate(args.labels.read_text().splitlines()):
        name, class_id = line.strip(), number - 1
        name_to_id[name] = class_id
        if class_id == -1:
            if name != "__ignore__":
                sys.exit("labels.txt must start with __ignore__")
            continue
        if class_id == 0 and name != "_background_":
            sys.exit("labels.txt's second line must be _background_")
        names.append(name)
    (args.output_dir / "class_names.txt").write_text("\n".join(names))

    for json_file in sorted(args.input_dir.glob("*.json")):
        label_file = labelme.LabelFile(filename=str(json_file))
        (args.output_dir / "JPEGImages" / f"{json_file.stem}.jpg").write_bytes(
            label_file.image_data
        )
        image = labelme.utils.img_data_to_arr(label_file.image_data)
        class_mask, _ = labelme.utils.shapes_to_label(
            img_shape=image.shape, shapes=label_file.shapes, label_name_to_value=name_to_id
        )
        imgviz.io.lblsave(
            args.output_dir / "SegmentationClass" / f"{json_file.stem}.png",
            class_mask.astype(np.uint8),
        )


if __name__ == "__main__":
    main()
