"""The verbs that look at saved runs: evaluate, predict, summary, runs, compare, report."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from digitnet.cli.parser import UsageError


def cmd_evaluate(args: argparse.Namespace) -> int:
    from digitnet.api import load

    ev = load(args.run).evaluate()
    print(json.dumps(ev.to_dict()) if args.json else ev.table())
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import numpy as np

    from digitnet.api import dataset_from_config, load
    from digitnet.data.inputs import read_inputs, select_indices

    if not args.files and not args.indices:
        raise UsageError("predict: give image/IDX files or --indices")
    model = load(args.run)
    names, x = read_inputs(args.files, model.spec.input_shape)
    truth: list[int | None] = [None] * len(names)
    if args.indices:
        ds = dataset_from_config(model.config)
        idx = select_indices(args.indices, len(ds.y_test))
        names += [f"test[{i}]" for i in idx]
        truth += [int(ds.y_test[i]) for i in idx]
        x = np.concatenate([x.reshape(len(x), *ds.image_shape), ds.x_test[idx]])
    probs = model.predict_proba(x)
    labels = probs.argmax(axis=1)
    why: list[Any] = [None] * len(names)
    if args.explain:
        from digitnet.explain import gradient_x_input, normalized

        why = list(normalized(gradient_x_input(model, x, labels)[1]))
    rows = zip(names, labels, probs, truth, why, strict=True)
    if args.json:
        print(json.dumps([{"input": n, "label": int(lab), "probabilities": [round(float(p), 6) for p in row],
                           **({"true": t} if t is not None else {}),
                           **({"explanation": w.round(3).tolist()} if w is not None else {})}
                          for n, lab, row, t, w in rows]))
    for n, lab, row, t, w in [] if args.json else rows:
        print(f"{n}: {lab}  p={row[lab]:.4f}" + (f"  (true {t})" if t is not None else ""))
        if w is not None:
            from digitnet.explain import text_map

            print(f"  pixels that pushed {lab}: # + towards it (strongly, weakly), = - away")
            print(text_map(w))
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    from digitnet.api import load

    model = load(args.run)
    print(model.summary())
    metrics = model.config.get("metrics")
    if metrics:
        after = f" after {metrics['epochs']} epochs" if "epochs" in metrics else ""
        print(f"test accuracy {metrics['test_accuracy']:.4f}{after}")
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from digitnet.runlist import list_runs, table

    runs = list_runs(args.folder)
    if args.json:
        print(json.dumps([r.to_dict() for r in runs]))
    else:
        print(table(runs) if runs else f"no runs under {args.folder}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from digitnet.compare import compare_runs, text

    cmp = compare_runs(args.runs)
    print(json.dumps(cmp.to_dict()) if args.json else text(cmp))
    if args.html:
        write_comparison(cmp, args.out, quiet=args.json)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    import shlex

    from digitnet.report import write_report

    if len(args.path) > 1:
        if args.markdown:
            raise UsageError("report: --markdown is for one run or sweep, not a comparison")
        return write_comparison(args.path, args.out or "compare-report")
    page = write_report(args.path[0], args.out, markdown=args.markdown,
                        command=shlex.join(["digitnet", *args.argv]))
    print(f"wrote {page}" + (f" and {args.markdown}" if args.markdown else ""))
    return 0


def write_comparison(runs: Any, out: str, quiet: bool = False) -> int:
    """The comparison's report page; runs: run directories, or a Comparison already made."""
    from digitnet.compare import compare_report, compare_runs
    from digitnet.report import save

    cmp = compare_runs(runs) if isinstance(runs, list) else runs
    page = save(compare_report(cmp), Path(out))
    if not quiet:
        print(f"wrote {page}")
    return 0

