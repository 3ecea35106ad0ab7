"""`digitnet report`: one self-contained HTML page (and the PNGs, and optionally markdown) for a
run directory or a sweep directory.

A report is a list of sections built once and rendered twice: HTML, with every image inlined
as a base64 data URI and a tiny sort script (opens offline, no CDN), and markdown that links
the PNG files. Every piece of text that reaches the HTML goes through html.escape.
"""

from __future__ import annotations

import base64
import html
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from digitnet import artifacts as art
from digitnet import plots


@dataclass
class Image:
    name: str  # file name of the PNG in the report folder
    alt: str
    data: bytes


@dataclass
class Table:
    headers: list[str]
    rows: list[list[Any]]
    sortable: bool = False


@dataclass
class Section:
    title: str
    blocks: list[str | Image | Table] = field(default_factory=list)


@dataclass
class Report:
    title: str
    sections: list[Section]


# ---- a run ----------------------------------------------------------------------------------

def run_report(run_dir: Path, mistakes: int = 24) -> Report:
    from digitnet.api import dataset_from_config, load

    model = load(run_dir)
    ds = dataset_from_config(model.config)
    probs = model.predict_proba(ds.x_test)
    ev = model.evaluate(ds.x_test, ds.y_test)
    pred = probs.argmax(axis=1)
    wrong = np.flatnonzero(pred != ds.y_test)
    worst = wrong[np.argsort(-probs[wrong, pred[wrong]], kind="stable")][:mistakes]
    captions = [f"#{i}\n{ds.y_test[i]} → {pred[i]} ({probs[i, pred[i]]:.2f})" for i in worst]

    spec, train = model.spec, model.config.get("train", {})
    metrics = model.config.get("metrics", {})
    smoothing = float(train.get("label_smoothing") or 0)
    loss_note = (f"; training and validation losses include label smoothing ε = {smoothing:g}"
                 if smoothing else "")
    overview = Table([], [
        ["layers", model.architecture],
        ["activation", spec.activation],
        ["dropout", ", ".join(map(str, spec.dropout)) or "none"],
        ["preprocessing", spec.preprocess + (", deskewed" if spec.deskew else "")],
        ["parameters", f"{model.num_params:,}"],
        ["training", ", ".join(f"{k} {train[k]}" for k in ("optimizer", "lr", "epochs",
                                                             "batch_size", "seed") if k in train)],
        ["schedule", schedule_text(train)],
        ["validation", validation_text(train.get("validation", "test"))],
        ["dataset", f"{ds.name}: {len(ds.y_train):,} train, {len(ds.y_test):,} test images"],
        ["test accuracy", f"{ev.accuracy:.4f}"],
        ["test loss", f"{ev.loss:.4f} (plain cross-entropy{loss_note})"],
        ["training seconds", str(metrics.get("train_seconds", "?"))],
        ["date", run_date(model.config, run_dir)],
        ["version", f"digitnet {model.config.get('versions', {}).get('digitnet', '?')}"],
    ])
    sections = [Section("Overview", [overview])]
    if model.history:
        loss_label = f"loss (label-smoothed, ε = {smoothing:g})" if smoothing else "loss"
        sections.append(Section("Training curves", [
            "Loss and accuracy after each epoch, on the training batches and on the validation data"
            + (f"; both losses include label smoothing (ε = {smoothing:g}), the test loss does not."
               if smoothing else "."),
            Image("curves.png", "loss and accuracy per epoch",
                  plots.curves(model.history, loss_label=loss_label))]))
    sections.append(Section("Confusion matrix", [
        Image("confusion.png", "confusion matrix", plots.confusion(ev.confusion))]))
    sections.append(Section("Per-class F1", [Image("f1.png", "per-class F1", plots.f1_bars(ev.f1))]))
    sections += inside_sections(model, ds)
    if len(worst):
        sections.append(Section("Most confidently wrong test images", [
            f"The {len(worst)} of {len(wrong)} misclassified test images the model was surest of: "
            "index: true → predicted (probability).",
            Image("mistakes.png", "most confidently wrong test images",
                  plots.gallery(ds.x_test[worst], captions, "true → predicted (probability)"))]))
    return Report(f"digitnet run report: {run_dir.resolve().name}", sections)


def schedule_text(train: dict[str, Any]) -> str:
    kind = train.get("schedule", "constant")
    if kind == "cosine" and train.get("warmup"):
        return f"cosine, {train['warmup']:g} warm-up epochs"
    if kind == "step":
        return f"step: ×{train.get('step_gamma', 0.1):g} every {train.get('step_epochs', '?')} epochs"
    return str(kind)


def validation_text(v: Any) -> str:
    if v == "test":
        return "the test set (no held-out split)"
    if v == "none":
        return "none"
    return f"{float(v):.0%} of the training images held out"


def run_date(config: dict[str, Any], run_dir: Path) -> str:
    if config.get("finished"):
        return config["finished"].replace("T", " ").replace("Z", " UTC")
    import time

    mtime = (run_dir / art.CONFIG).stat().st_mtime
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(mtime))


def inside_sections(model, ds, units: int = 64) -> list[Section]:
    """What the first layer looks for, and how each hidden layer answers each class."""
    from digitnet.explain import first_layer_images, mean_hidden_per_class

    out = []
    if model.spec.hidden and len(model.spec.input_shape) == 2:
        w = first_layer_images(model)[:units]
        out.append(Section("First layer's weights", [
            f"The incoming weights of {'the first' if len(w) < model.spec.hidden[0] else 'each'} "
            f"{len(w)} units of the first hidden layer, as {'×'.join(map(str, w.shape[1:]))} "
            "images (red: positive, blue: negative, each unit on its own scale).",
            Image("weights.png", "first-layer weights as images", plots.weight_images(w))]))
    if model.spec.hidden:
        means = mean_hidden_per_class(model, ds.x_test, ds.y_test)
        out.append(Section("Mean hidden activation per class", [
            "Each hidden unit's mean activation over the test images of each class.",
            Image("activations.png", "mean hidden activation per class",
                  plots.activation_maps(means))]))
    return out


# ---- a sweep --------------------------------------------------------------------------------

def fmt(v: Any) -> str:
    if isinstance(v, list | tuple):
        return ",".join(map(fmt, v)) or "none"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def axis_keys(axis: str) -> list[str]:
    """An axis is one option, or several that change together ("epochs, batch_size")."""
    return [k.strip() for k in axis.split(",")]


def point_label(values: dict[str, Any], axes: list[str]) -> str:
    parts = []
    for axis in axes:
        keys = axis_keys(axis)
        if len(keys) == 1:
            parts.append(fmt(values[keys[0]]) if len(axes) == 1 else f"{axis}={fmt(values[axis])}")
        else:
            parts.append(", ".join(f"{k}={fmt(values[k])}" for k in keys))
    return "; ".join(parts) or "base"


def aggregate(records: list[dict[str, Any]], keyfn) -> list[tuple[Any, list[dict[str, Any]]]]:
    """Records grouped by keyfn(record), in order of first appearance."""
    out: dict[Any, list[dict[str, Any]]] = {}
    for r in records:
        out.setdefault(keyfn(r), []).append(r)
    return list(out.items())


def sweep_report(sweep_dir: Path) -> Report:
    from digitnet.sweep import normalized, read_results

    doc = read_results(sweep_dir)
    trials = [r for r in doc["trials"] if r["status"] == "complete"]
    values = {r["id"]: normalized(r["options"]) for r in doc["trials"]}
    intro = [f"{doc['finished']} of {doc['planned']} trials finished; {len(trials)} complete."]
    if doc.get("command"):
        intro.append(f"Sweep command: {doc['command']}")
    if doc.get("machine"):
        intro.append(f"Driver machine: {doc['machine']}")
    sections = [Section("Sweep", intro)]
    summary_rows = []
    for gname, group in doc["groups"].items():
        members = [r for r in trials if gname in r["groups"]]
        if not members:
            continue
        axes = group["axes"]
        sec = Section(f"{gname} ({group['kind']}: {', '.join(axes) or 'base config'})")
        if group.get("description"):
            sec.blocks.append(group["description"])
        points = aggregate(members, lambda r, axes=axes: point_label(values[r["id"]], axes))
        for label, rs in points:
            acc = mean_std([r["metrics"]["test_accuracy"] for r in rs])
            secs = mean_std([r["metrics"]["train_seconds"] for r in rs])
            summary_rows.append([gname, label, len(rs), f"{acc[0]:.4f} ± {acc[1]:.4f}",
                                 f"{secs[0]:.1f} ± {secs[1]:.1f}"])
        for i, axis in enumerate(axes):
            keys = axis_keys(axis)
            by_value = aggregate(members, lambda r, keys=keys: tuple(
                tuple(v) if isinstance(v, list) else v for v in (values[r["id"]][k] for k in keys)))
            numeric = group["kind"] == "random" and all(
                isinstance(v[0], int | float) and not isinstance(v[0], bool) and len(v) == 1
                for v, _ in by_value)
            pts = []
            for v, rs in by_value:
                m, s = mean_std([r["metrics"]["test_accuracy"] for r in rs])
                pts.append({"x": v[0], "label": point_label(dict(zip(keys, v, strict=True)), [axis]),
                            "mean": m, "std": s, "n": len(rs)})
            if numeric:
                pts.sort(key=lambda p: p["x"])
                xs = [p["x"] for p in pts]
                log = min(xs) > 0 and max(xs) / min(xs) >= 10
            else:
                log = False
            sec.blocks.append(Image(f"sweep-{gname}-{i}.png", f"test accuracy vs {axis}",
                                    plots.axis_plot(axis, pts, numeric, log)))
        if group["kind"] == "grid":
            series = val_series(sweep_dir, points)
            if series:
                sec.blocks.append(Image(f"sweep-{gname}-validation.png",
                                        f"{gname}: validation accuracy per epoch",
                                        plots.val_curves(gname, series)))
        sections.append(sec)
    sections.insert(1, Section("Results by point", [
        "Test accuracy and training seconds, mean ± standard deviation over seeds (n).",
        Table(["group", "point", "n", "test accuracy", "training seconds"], summary_rows,
              sortable=True)]))
    sections.append(Section("All trials", [trials_table(doc["trials"], doc["groups"], values)]))
    return Report(f"digitnet sweep report: {sweep_dir.resolve().name}", sections)


def val_series(sweep_dir: Path, points) -> list[tuple[str, list[float], list[float]]]:
    """Per point: validation accuracy per epoch, mean and std over seeds."""
    series = []
    for label, rs in points:
        runs = [art.read_history(sweep_dir / r["run_dir"] / art.HISTORY) for r in rs]
        runs = [[h["val_accuracy"] for h in run if "val_accuracy" in h] for run in runs]
        n = min(len(run) for run in runs)
        if n == 0:
            continue
        arr = np.array([run[:n] for run in runs])
        series.append((label, arr.mean(axis=0).tolist(), arr.std(axis=0, ddof=0).tolist()))
    return series


def trials_table(records: list[dict[str, Any]], groups: dict[str, Any],
                 values: dict[str, dict[str, Any]]) -> Table:
    keys = list(dict.fromkeys(k for g in groups.values() for a in g["axes"] for k in axis_keys(a)))
    keys += [] if "seed" in keys else ["seed"]
    rows = []
    for r in records:
        m = r["metrics"]
        rows.append([r["id"], ",".join(r["groups"]), *(fmt(values[r["id"]][k]) for k in keys),
                     m.get("test_accuracy"), m.get("test_loss"),
                     f"{m['train_seconds']:.1f}" if "train_seconds" in m else None,
                     r["status"] if r["status"] == "complete" else f"failed: {r['error']}"])
    return Table(["trial", "groups", *keys, "test accuracy", "test loss", "training seconds",
                  "status"], rows, sortable=True)


# ---- rendering ------------------------------------------------------------------------------

# Tables wrap their cells and, if still too wide, scroll inside themselves: the page stays
# within a 1280-px window.
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; padding: 0 1em; max-width: 1100px;
       color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 13px; display: block;
        max-width: 100%; overflow-x: auto; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: left; overflow-wrap: anywhere; }
th { background: #f0f3f7; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th[data-order=asc]::after { content: " ▲"; }
table.sortable th[data-order=desc]::after { content: " ▼"; }
img { max-width: 100%; display: block; margin: 0.5em 0; }
"""

# Click a header to sort by it; numbers compare as numbers ("0.97 ± 0.01" by its mean).
SORT_JS = """
for (const th of document.querySelectorAll("table.sortable th")) {
  th.addEventListener("click", () => {
    const body = th.closest("table").tBodies[0], i = th.cellIndex;
    const asc = th.dataset.order !== "asc";
    for (const other of th.parentNode.children) delete other.dataset.order;
    th.dataset.order = asc ? "asc" : "desc";
    const key = (row) => {
      const text = row.cells[i].textContent.trim(), n = parseFloat(text);
      return isNaN(n) ? [1, text] : [0, n];
    };
    const rows = Array.from(body.rows).sort((a, b) => {
      const [ka, va] = key(a), [kb, vb] = key(b);
      const c = ka - kb || (va < vb ? -1 : va > vb ? 1 : 0);
      return asc ? c : -c;
    });
    for (const row of rows) body.appendChild(row);
  });
}
"""


def cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 10 else f"{v:.1f}"
    return "" if v is None else str(v)


def to_html(report: Report) -> str:
    e = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>{e(report.title)}</title><style>{STYLE}</style></head><body>",
           f"<h1>{e(report.title)}</h1>"]
    for sec in report.sections:
        out.append(f"<section><h2>{e(sec.title)}</h2>")
        for b in sec.blocks:
            if isinstance(b, str):
                out.append(f"<p>{e(b)}</p>")
            elif isinstance(b, Image):
                uri = "data:image/png;base64," + base64.b64encode(b.data).decode()
                out.append(f'<img src="{uri}" alt="{e(b.alt)}" title="{e(b.name)}">')
            else:
                cls = ' class="sortable"' if b.sortable else ""
                head = ("<thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in b.headers)
                        + "</tr></thead>") if b.headers else ""
                out.append(f"<table{cls}>{head}<tbody>")
                out += ["<tr>" + "".join(f"<td>{e(cell(v))}</td>" for v in row) + "</tr>"
                        for row in b.rows]
                out.append("</tbody></table>")
        out.append("</section>")
    out.append(f"<script>{SORT_JS}</script></body></html>")
    return "\n".join(out)


def to_markdown(report: Report, image_dir: Path, md_path: Path, command: str) -> str:
    def esc(v: Any) -> str:
        return cell(v).replace("|", "\\|").replace("\n", " ")

    rel = Path(os.path.relpath(image_dir.resolve(), md_path.resolve().parent))
    out = [f"# {report.title}", ""]
    if command:
        out += [f"Generated by `{command}` — do not edit by hand.", ""]
    for sec in report.sections:
        out += [f"## {sec.title}", ""]
        for b in sec.blocks:
            if isinstance(b, str):
                out += [html.escape(b, quote=False), ""]
            elif isinstance(b, Image):
                out += [f"![{b.alt}]({(rel / b.name).as_posix()})", ""]
            else:
                width = len(b.headers or b.rows[0])  # markdown needs a header row: blank if none
                out.append("| " + " | ".join(map(esc, b.headers or [""] * width)) + " |")
                out.append("|" + "---|" * width)
                out += ["| " + " | ".join(map(esc, row)) + " |" for row in b.rows]
                out.append("")
    return "\n".join(out)


def save(report: Report, out_dir: Path) -> Path:
    """report.html and its PNGs in out_dir; the page's path."""
    for sec in report.sections:
        for b in sec.blocks:
            if isinstance(b, Image):
                art.atomic_write_bytes(out_dir / b.name, b.data)
    page = out_dir / "report.html"
    art.atomic_write_bytes(page, to_html(report).encode())
    return page


def write_report(path: str | os.PathLike, out: str | os.PathLike | None = None, *,
                 markdown: str | os.PathLike | None = None, command: str = "") -> Path:
    """Write report.html and its PNGs to `out` (default PATH/report); return the page's path."""
    from digitnet.sweep import RESULTS_JSON

    path = Path(path)
    if (path / RESULTS_JSON).is_file():
        report = sweep_report(path)
    else:
        report = run_report(art.check_run_dir(path))
    out_dir = Path(out) if out is not None else path / "report"
    page = save(report, out_dir)
    if markdown is not None:
        md = Path(markdown)
        art.atomic_write_bytes(md, to_markdown(report, out_dir, md, command).encode())
    return page
