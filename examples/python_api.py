"""The whole segkit chain from Python: labelme folder → dataset → model → report.

Run: ``python examples/python_api.py [WORK_DIR] [--epochs N] [--scenes N]``. Without a
labelme folder of your own it writes segkit's sample data into WORK_DIR/annotations;
replace ``annotations`` and ``labels`` below with yours. The same chain in one call,
resumable, is ``segkit.run(annotations, work, train={"epochs": 2})``; this script shows
each stage's function, to change or inspect any step.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import segkit
from segkit.report import report
from segkit.sample_data import write_sample_data


def main(work: Path, epochs: int, scenes: int) -> float | None:
    """Run every stage into ``work`` and return the validation mIoU."""
    annotations = write_sample_data(work / "annotations", scenes=scenes, tiff16=False)
    dataset, run = work / "dataset", work / "run"

    converted = segkit.convert(annotations, dataset, labels=str(annotations / "labels.txt"))
    print(f"convert: {converted.images} images, classes {converted.classes}")
    if not converted.ok:
        raise SystemExit("\n".join(converted.failures))

    findings = segkit.validate_dataset(dataset)
    print(f"validate: {len(findings)} findings")

    splits = segkit.split_dataset(dataset, val=0.2, test=0.1, seed=0)
    print("split:", {s.name: s.images for s in splits.splits})

    weights = segkit.compute_weights(dataset, border=True)
    print("weights:", [round(w, 2) for w in weights.class_weights])

    trained = segkit.train(dataset, run, epochs=epochs, model="unet-tiny", crop=32, batch_size=4)
    print(f"train: best val mIoU {trained.best_score} at epoch {trained.best_epoch}")

    scored = report(run)  # the run's config.json names the dataset and its val split
    miou = scored.report["pixel"]["mIoU"]
    print(f"report: mIoU {miou}, files in {scored.output}")
    return miou


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", nargs="?", type=Path, default=Path("segkit-example"))
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--scenes", type=int, default=42)
    args = parser.parse_args()
    main(args.work, args.epochs, args.scenes)
