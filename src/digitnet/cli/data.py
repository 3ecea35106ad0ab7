"""The datasets verb: list, fetch, verify or show datasets."""

from __future__ import annotations

import argparse


def cmd_datasets(args: argparse.Namespace) -> int:
    from digitnet.data import manage

    lines = (manage.listing() if args.action == "list" else
             manage.show(args.name, args.data_dir, args.split, args.count, args.out)
             if args.action == "show" else getattr(manage, args.action)(args.name))
    print("\n".join(lines))
    return 0

