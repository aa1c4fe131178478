"""Rows and numbers of a report (pure: dicts and arrays in, rows and text out; no torch)."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

#: Columns of per_class.csv, in order (object columns only when instances exist).
PIXEL_COLUMNS = ("id", "class", "iou", "precision", "recall", "dice", "gt_pixels", "pred_pixels")
OBJECT_COLUMNS = ("object_f1", "object_ap", "objects_gt", "objects_pred", "merges", "splits")
SUMMARY_KEYS = ("aAcc", "mAcc", "mIoU", "mDice", "FWIoU")
#: Per-class numbers --compare subtracts.
DELTA_KEYS = ("iou", "precision", "recall", "dice", "object_f1")
#: Largest class count whose confusion matrix is printed in the terminal.
MAX_PRINTED_CLASSES = 20


#: Why a perfect prediction can score object recall below 1 (see docs/metrics.md).
CONNECTED_COMPONENTS_NOTE = (
    "Predicted objects are the connected components of each predicted class, so "
    "same-class objects that touch count as one (a merge): even a perfect prediction "
    "scores object recall below 1 where they touch."
)


def object_note(report: Mapping[str, Any]) -> str | None:
    """The footnote on object scores, where the report has them."""
    return CONNECTED_COMPONENTS_NOTE if report.get("objects") else None


def class_name(names: Sequence[str], class_id: int) -> str:
    """The name of ``class_id``, or the id itself where the dataset names no classes."""
    return names[class_id] if class_id < len(names) else str(class_id)


def per_class_rows(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per class id: pixel scores plus object scores where instances exist.

    Scores are floats or ``None`` (undefined, NaN in the maths).
    """
    names = report["classes"]
    objects = report.get("objects")
    by_id = {row["id"]: row for row in objects["scores"]["per_class"]} if objects else {}
    rows = []
    for pixel in report["pixel"]["per_class"]:
        row = {
            "id": pixel["id"],
            "class": class_name(names, pixel["id"]),
            **{key: pixel[key] for key in PIXEL_COLUMNS[2:]},
        }
        if objects:
            obj = by_id.get(pixel["id"], {})
            row.update(
                object_f1=obj.get("f1"),
                object_ap=obj.get("ap"),
                objects_gt=obj.get("gt_objects"),
                objects_pred=obj.get("pred_objects"),
                merges=obj.get("merges"),
                splits=obj.get("splits"),
            )
        rows.append(row)
    return rows


def summary(report: Mapping[str, Any]) -> dict[str, Any]:
    """The headline numbers (dataset-level) and how many classes each mean used."""
    pixel = report["pixel"]
    out = {key: pixel[key] for key in SUMMARY_KEYS}
    out.update({f"{key}_classes": pixel[f"{key}_classes"] for key in ("mAcc", "mIoU", "mDice")})
    return out


def normalized_rows(matrix: NDArray[np.integer]) -> NDArray[np.float64]:
    """Each row divided by its sum (the share of a class's pixels predicted as each
    class); a row without pixels stays NaN."""
    matrix = np.asarray(matrix, np.float64)
    totals = matrix.sum(axis=1, keepdims=True)
    out = np.full(matrix.shape, np.nan)
    np.divide(matrix, totals, out=out, where=totals > 0)
    return out


def per_image_order(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Per-image rows worst first: by mIoU ascending, undefined mIoU last, then by id."""
    return sorted(
        rows, key=lambda r: (r["miou"] is None, r["miou"] if r["miou"] is not None else 0, r["id"])
    )


def format_score(value: float | None, digits: int = 4) -> str:
    """A score for people: ``—`` where it is undefined."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.{digits}f}"


def csv_text(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """CSV with a header; undefined scores are empty cells."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row.get(c) is None else row.get(c) for c in columns])
    return buffer.getvalue()


def confusion_csv(matrix: NDArray[np.integer], names: Sequence[str]) -> str:
    """The counts with class names: rows ground truth, columns prediction."""
    labels = [class_name(names, i) for i in range(len(matrix))]
    rows = [
        {"gt \\ pred": labels[i], **dict(zip(labels, map(int, r), strict=True))}
        for i, r in enumerate(matrix)
    ]
    return csv_text(rows, ["gt \\ pred", *labels])


def _delta(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else b - a


def shared_classes(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """Class names both reports score, in A's order."""
    names_b = {row["class"] for row in per_class_rows(b)}
    return [row["class"] for row in per_class_rows(a) if row["class"] in names_b]


def compare_rows(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per-class ``B - A`` for the class names both reports score (matched by name)."""
    rows_a = {row["class"]: row for row in per_class_rows(a)}
    rows_b = {row["class"]: row for row in per_class_rows(b)}
    rows = []
    for name in shared_classes(a, b):
        ra, rb = rows_a[name], rows_b[name]
        row: dict[str, Any] = {"class": name}
        for key in DELTA_KEYS:
            row[f"{key}_a"] = ra.get(key)
            row[f"{key}_b"] = rb.get(key)
            row[f"{key}_delta"] = _delta(ra.get(key), rb.get(key))
        rows.append(row)
    return rows


def compare_summary(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """Headline numbers of both reports and their ``B - A`` deltas.

    When the reports' classes differ, ``mIoU_shared`` adds the mean IoU over the classes
    both score (matched by name, each scored in both): the one mean that compares like
    with like.
    """
    sa, sb = summary(a), summary(b)
    headline = {
        key: {"a": sa[key], "b": sb[key], "delta": _delta(sa[key], sb[key])} for key in SUMMARY_KEYS
    }
    names_a, names_b = (
        [r["class"] for r in per_class_rows(a)],
        [r["class"] for r in per_class_rows(b)],
    )
    if names_a != names_b:
        shared = [row for row in compare_rows(a, b) if None not in (row["iou_a"], row["iou_b"])]
        mean_a = sum(row["iou_a"] for row in shared) / len(shared) if shared else None
        mean_b = sum(row["iou_b"] for row in shared) / len(shared) if shared else None
        headline["mIoU_shared"] = {"a": mean_a, "b": mean_b, "delta": _delta(mean_a, mean_b)}
    return headline


def markdown(report: Mapping[str, Any]) -> str:
    """report.md: provenance, headline numbers, the per-class table, the worst images."""
    prov = report["provenance"]
    head = summary(report)
    rows = per_class_rows(report)
    objects = bool(report.get("objects"))
    lines = [
        "# segkit report",
        "",
        f"- source: `{_md(str(prov.get('source')))}`",
        f"- split: `{_md(str(report['split']))}` ({report['images']} images"
        + (f", {len(report['missing'])} missing" if report["missing"] else "")
        + ")",
        f"- segkit {prov.get('segkit_version')}",
        "",
        "| aAcc | mAcc | mIoU | mDice | FWIoU |",
        "|---:|---:|---:|---:|---:|",
        "| " + " | ".join(format_score(head[k]) for k in SUMMARY_KEYS) + " |",
        "",
        f"mIoU averages {head['mIoU_classes']} classes (classes absent from both ground "
        "truth and prediction are left out); all numbers come from the dataset-level "
        "confusion matrix.",
        "",
    ]
    header = ["id", "class", "IoU", "precision", "recall", "Dice", "GT px", "pred px"]
    if objects:
        header += ["object F1", "object AP", "merges", "splits"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
    for row in rows:
        cells = [str(row["id"]), _md(row["class"])]
        cells += [format_score(row[k]) for k in ("iou", "precision", "recall", "dice")]
        cells += [str(row["gt_pixels"]), str(row["pred_pixels"])]
        if objects:
            cells += [format_score(row["object_f1"]), format_score(row["object_ap"])]
            cells += [_int(row["merges"]), _int(row["splits"])]
        lines.append("| " + " | ".join(cells) + " |")
    note = object_note(report)
    if note:
        lines += ["", note]
    worst = report.get("per_image", [])[:10]
    if worst:
        lines += [
            "",
            "## Worst images (per-image mIoU, not the headline)",
            "",
            "| id | mIoU | aAcc |",
            "|---|---:|---:|",
        ]
        lines += [
            f"| {_md(r['id'])} | {format_score(r['miou'])} | {format_score(r['aacc'])} |"
            for r in worst
        ]
    return "\n".join(lines) + "\n"


def _int(value: int | None) -> str:
    return "—" if value is None else str(value)


def _md(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    escaped = "".join("\\" + ch if ch in "\\`*_{}[]()#+-.!|<>" else ch for ch in text)
    return " ".join(escaped.split())
