"""report.html: one self-contained page (pictures embedded as data URIs, no scripts, no
network), rendered by jinja2 with autoescaping so no class name or file name can inject
markup."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any

from segkit.report.tables import (
    SUMMARY_KEYS,
    format_score,
    object_note,
    per_class_rows,
    summary,
)

_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<title>segkit report · {{ source }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
td.name, th.name { text-align: left; }
caption { text-align: left; font-weight: bold; padding-bottom: .3em; }
img { max-width: 100%; }
code { background: #f4f4f4; padding: 0 3px; }
</style>
</head>
<body>
<h1>segkit report</h1>
<p>source <code>{{ source }}</code>, split <code>{{ split }}</code>, {{ images }} images{% if missing %}, {{ missing }} missing{% endif %};
segkit {{ version }}{% if checkpoint %}, checkpoint <code>{{ checkpoint }}</code>{% endif %}.</p>
<table id="summary">
<caption>Dataset-level scores</caption>
<tr>{% for key in summary_keys %}<th>{{ key }}</th>{% endfor %}</tr>
<tr>{% for key in summary_keys %}<td>{{ head[key] }}</td>{% endfor %}</tr>
</table>
<p>mIoU averages {{ miou_classes }} classes; a class absent from both ground truth and prediction is left out (shown as —).</p>
<table id="per-class">
<caption>Per class</caption>
<tr><th>id</th><th class="name">class</th><th>IoU</th><th>precision</th><th>recall</th><th>Dice</th><th>GT px</th><th>pred px</th>{% if objects %}<th>object F1</th><th>object AP</th><th>merges</th><th>splits</th>{% endif %}</tr>
{% for row in rows %}<tr><td>{{ row.id }}</td><td class="name">{{ row.name }}</td>{% for cell in row.cells %}<td>{{ cell }}</td>{% endfor %}</tr>
{% endfor %}</table>
{% if object_note %}<p>{{ object_note }}</p>{% endif %}
{% if confusion %}<h2>Confusion matrix</h2>
<img alt="row-normalised confusion matrix" src="data:image/png;base64,{{ confusion }}">{% endif %}
{% if worst %}<h2>Worst images (per-image mIoU; not the headline)</h2>
<table id="per-image"><tr><th class="name">id</th><th>mIoU</th><th>aAcc</th></tr>
{% for row in worst %}<tr><td class="name">{{ row.id }}</td><td>{{ row.miou }}</td><td>{{ row.aacc }}</td></tr>
{% endfor %}</table>{% endif %}
{% for overlay in overlays %}<figure><img alt="{{ overlay.name }}" src="data:image/png;base64,{{ overlay.data }}"><figcaption>{{ overlay.name }}</figcaption></figure>
{% endfor %}
</body>
</html>
"""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def render_html(
    report: Mapping[str, Any],
    *,
    confusion_png: bytes | None = None,
    overlays: Sequence[tuple[str, bytes]] = (),
    worst_rows: int = 20,
) -> str:
    """The report page; ``overlays`` are ``(caption, png bytes)`` pairs."""
    import jinja2

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    head = summary(report)
    objects = bool(report.get("objects"))
    rows = []
    for row in per_class_rows(report):
        cells = [format_score(row[k]) for k in ("iou", "precision", "recall", "dice")]
        cells += [str(row["gt_pixels"]), str(row["pred_pixels"])]
        if objects:
            cells += [format_score(row["object_f1"]), format_score(row["object_ap"])]
            cells += ["—" if row[k] is None else str(row[k]) for k in ("merges", "splits")]
        rows.append({"id": row["id"], "name": row["class"], "cells": cells})
    prov = report["provenance"]
    return env.from_string(_TEMPLATE).render(
        source=str(prov.get("source")),
        split=str(report["split"]),
        images=report["images"],
        missing=len(report["missing"]),
        version=prov.get("segkit_version"),
        checkpoint=(prov.get("checkpoint") or {}).get("path"),
        summary_keys=SUMMARY_KEYS,
        head={key: format_score(head[key]) for key in SUMMARY_KEYS},
        miou_classes=head["mIoU_classes"],
        objects=objects,
        object_note=object_note(report),
        rows=rows,
        confusion=_b64(confusion_png) if confusion_png else None,
        worst=[
            {"id": r["id"], "miou": format_score(r["miou"]), "aacc": format_score(r["aacc"])}
            for r in report.get("per_image", [])[:worst_rows]
        ],
        overlays=[{"name": name, "data": _b64(data)} for name, data in overlays],
    )
