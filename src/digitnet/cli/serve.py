"""The verbs that ship a model: serve (HTTP, optionally on Ray Serve) and export (ONNX)."""

from __future__ import annotations

import argparse
from pathlib import Path

from digitnet.cli.parser import UsageError


def check_port(port: object) -> int:
    """A TCP port to listen on: 0 (any free port) to 65535."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise UsageError(f"--port must be a whole number within 0…65535, got {port!r}")
    return port


def cmd_serve(args: argparse.Namespace) -> int:
    # Flags that need no server code are checked first: their errors cost what --help does,
    # not the server's imports.
    check_port(args.port)
    if args.max_queue < 1 or not 0 <= args.batch_wait_ms <= 1000:
        raise UsageError("--max-queue must be at least 1 and --batch-wait-ms within 0–1000")
    try:
        from digitnet.serve import Limits
        from digitnet.serve.server import ServerOptions, run
    except ImportError as exc:
        raise UsageError(f"serve needs the serve extra ({exc.name} is missing): "
                         "pip install 'digitnet[serve]'") from None
    given = {k: getattr(args, k) for k in ("max_body_bytes", "max_batch", "max_image_pixels")
             if getattr(args, k) is not None}
    from digitnet.serve.guard import default_hosts, parse_hosts

    try:
        limits = Limits(**given)
        hosts = parse_hosts(args.allowed_hosts) if args.allowed_hosts else default_hosts(args.host)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    options = ServerOptions(host=args.host, port=args.port, workers=args.workers,
                            max_connections=args.max_connections, header_timeout=args.header_timeout,
                            body_timeout=args.body_timeout, access_log=args.access_log)
    app_args = {"model_dir": str(args.run), "limits": limits.to_dict(), "max_queue": args.max_queue,
                "batch_wait_ms": args.batch_wait_ms, "allowed_hosts": hosts}
    if args.ray:
        try:
            from digitnet.serve.ray import serve_on_ray
        except ImportError as exc:
            raise UsageError(f"serve --ray needs Ray Serve ({exc.name} is missing): "
                             "pip install 'digitnet[ray]'") from None
        return serve_on_ray(app_args, options, args.replicas)
    from digitnet import artifacts as art

    art.check_run_dir(Path(args.run))
    run(app_args, options, str(args.run))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from digitnet.export import export

    print(f"wrote {export(args.run, args.format, args.out, args.opset)}")
    return 0

