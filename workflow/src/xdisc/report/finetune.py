"""The fine-tuning summary page of the report (``results/metrics/finetune.html``): which labels were used
(manual and weak, per station), which matched no station of the run, the station-grouped cross-validation
or why there is none, and every warning of the run. Reads the metrics of ``xdisc train finetune``
(``results/metrics/finetune.json``); computes nothing."""

from __future__ import annotations

import html
import math
from pathlib import Path

from xdisc.core.artifacts import atomic_output

STYLE = ("body{font-family:system-ui,sans-serif;color:#222}table{border-collapse:collapse;margin:0.4em 0 1em}"
         "td,th{padding:0.15em 0.8em;text-align:left;border-bottom:1px solid #ddd}"
         ".warn{background:#fdecea;border:2px solid #b03a2e;padding:0.4em 1em;margin:0.5em 0}"
         ".warn b{color:#b03a2e}.muted{color:#666}")


def _number(value) -> str:
    if isinstance(value, float):
        return "–" if not math.isfinite(value) else f"{value:.3f}"
    return html.escape(str(value))


def _table(header: list[str], rows: list[list], table_id: str) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_number(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table id={table_id}><tr>{head}</tr>{body}</table>"


def _scores(name: str, m: dict) -> list:
    return [name, m.get("n", 0), m.get("accuracy", math.nan), m.get("roc_auc", math.nan),
            m.get("recall", math.nan), m.get("specificity", math.nan)]


def finetune_summary_html(result: dict) -> str:
    """The summary page of the metrics ``result`` of :func:`xdisc.cnn.train.finetune`."""
    e = html.escape
    parts = ["<h1>Fine-tuning on labelled real images</h1>"]
    if not result.get("fine_tuned", True):
        parts.append("<p class=warn id=not-fine-tuned><b>NOT FINE-TUNED:</b> "
                     + e(result.get("note", "no image carries a present/absent label; the fine-tuned model is the "
                                            "pretrained one.")) + "</p>")
    if result.get("warnings"):
        parts.append("<div class=warn id=warnings><b>WARNING</b><ul>"
                     + "".join(f"<li>{e(w)}</li>" for w in result["warnings"]) + "</ul></div>")
    labels = result.get("labels", {})
    parts += ["<h2>Labels used</h2>",
              _table(["source", "stations", "images", "present", "absent"],
                     [[src, c["stations"], c["images"], c["present"], c["absent"]] for src, c in labels.items()],
                     "labels")]
    weak = result.get("weak_labels") or {}
    parts.append("<p class=muted>Weak labels from stacking verdicts: "
                 + (f"on (verdicts {', '.join(weak.get('verdicts', []))}; at least {weak.get('min_rf')} receiver "
                    f"functions; present needs x_amp / x_amp_err ≥ {weak.get('min_amplitude_sigma')}, absent the 410 "
                    f"and 660 measured; from {e(str(weak.get('stacking')))})" if weak.get("enabled") else "off")
                 + ". Label files: " + e(", ".join(result.get("label_files", [])) or "none") + ".</p>")
    unmatched = result.get("unmatched_labels") or {}
    parts.append("<h2>Labels matching no station of this run</h2>")
    parts.append(_table(["station", "labels"], [[k, v] for k, v in unmatched.items()], "unmatched")
                 if unmatched else "<p id=unmatched>none</p>")
    cv = result.get("cross_validation")
    parts.append("<h2>Station-grouped cross-validation</h2>")
    if cv:
        rows = [_scores("fine-tuned", cv["finetuned"]), _scores("pretrained only", cv["pretrained_only"])]
        for src, scores in (cv.get("by_source") or {}).items():
            rows += [_scores(f"fine-tuned, {src} labels", scores["finetuned"]),
                     _scores(f"pretrained only, {src} labels", scores["pretrained_only"])]
        parts += [f"<p>{cv['folds']} folds, every station's images in one test fold (out-of-fold predictions).</p>",
                  _table(["model", "images", "accuracy", "ROC AUC", "recall", "specificity"], rows, "cv")]
    else:
        parts.append(f"<p id=cv>none: {e(result.get('cross_validation_note', result.get('note', '')))}</p>")
    stations = result.get("labelled_stations") or {}
    if stations:
        parts += ["<h2>Labelled stations</h2>",
                  _table(["station", "source", "images", "present", "absent"],
                         [[st, c["source"], c["images"], c["present"], c["absent"]] for st, c in stations.items()],
                         "stations")]
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>xdisc fine-tuning</title>"
            f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>\n")


def write_finetune_summary(result: dict, path: str | Path) -> Path:
    """Write :func:`finetune_summary_html` of ``result`` to ``path`` (atomically)."""
    with atomic_output(path) as tmp:
        Path(tmp).write_text(finetune_summary_html(result), encoding="utf-8")
    return Path(path)
