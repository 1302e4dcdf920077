"""``tickpipe-standin``: run the stand-in Dukascopy server (see :mod:`.server`) until stopped.

Example: ``tickpipe-standin --root ../shared/data/dukascopy --port 8765 --p-503 0.05 --seed 1``
then point ``TICKPIPE_DUKASCOPY_BI5_URL`` at ``http://127.0.0.1:8765/datafeed`` and
``TICKPIPE_DUKASCOPY_JSON_URL`` at ``http://127.0.0.1:8765/v1``. Faults can be changed at run
time with ``curl -X POST localhost:8765/_control -d '{"p_429": 0.2}'``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

from tickpipe_dev.standin.server import Faults, Missing, start_standin


def default_root() -> Path:
    """``$TICKPIPE_SHARED_DIR/data/dukascopy``, else ``../shared/data/dukascopy`` from the cwd."""
    shared = os.environ.get("TICKPIPE_SHARED_DIR")
    base = Path(shared) if shared else Path.cwd().parent / "shared"
    return base / "data" / "dukascopy"


def _missing(values: list[str]) -> Missing:
    m = Missing()
    for item in values:
        kind, _, answer = item.partition("=")
        if kind == "bi5" and answer in ("empty", "404"):
            m.bi5 = answer  # type: ignore[assignment]
        elif kind == "json" and answer in ("empty", "404"):
            m.json = answer  # type: ignore[assignment]
        else:
            raise argparse.ArgumentTypeError(
                f"--missing {item!r}: expected bi5=empty|404 or json=404|empty"
            )
    return m


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="tickpipe-standin",
        description="Stand-in for Dukascopy's datafeed (/datafeed) and JSON API (/v1) hosts.",
    )
    p.add_argument("--root", type=Path, default=None,
                   help="tree laid out like ../shared/data/dukascopy (default: its path under "
                        "$TICKPIPE_SHARED_DIR, else under ../shared)")  # fmt: skip
    p.add_argument("--polygon-root", type=Path, default=None,
                   help="Polygon captures (default: polygon/ beside --root)")  # fmt: skip
    p.add_argument("--deriv-root", type=Path, default=None,
                   help="Deriv captures (default: deriv/ beside --root)")  # fmt: skip
    p.add_argument("--polygon-api-key", default=None,
                   help="key Polygon requests must carry as Bearer (default: any)")  # fmt: skip
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    p.add_argument("--missing", action="append", default=[], metavar="KIND=ANSWER",
                   help="bi5=empty|404 (default empty: 200 with 0 bytes for tick files), "
                        "json=404|empty (default 404; empty: the empty-bucket JSON)")  # fmt: skip
    d = Faults()
    p.add_argument("--latency-ms", type=float, default=d.latency_ms)
    p.add_argument("--jitter-ms", type=float, default=d.jitter_ms)
    p.add_argument("--p-500", type=float, default=d.p_500, help="probability of a 500")
    p.add_argument("--p-503", type=float, default=d.p_503, help="probability of a 503")
    p.add_argument("--p-429", type=float, default=d.p_429, help="probability of a 429")
    p.add_argument("--retry-after", type=float, default=d.retry_after_s,
                   help="Retry-After seconds sent with 429")  # fmt: skip
    p.add_argument("--p-html", type=float, default=d.p_html, help="probability of an HTML page")
    p.add_argument("--html-status", type=int, default=d.html_status)
    p.add_argument("--p-truncate", type=float, default=d.p_truncate,
                   help="probability of a body truncated to half")  # fmt: skip
    p.add_argument("--truncate-mode", choices=("abort", "short"), default=d.truncate_mode)
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the fault RNG")
    return p.parse_args(argv)


async def serve(
    root: Path,
    host: str,
    port: int,
    faults: Faults,
    missing: Missing,
    polygon_root: Path | None = None,
    deriv_root: Path | None = None,
    polygon_api_key: str | None = None,
) -> None:
    """Run the server until SIGINT/SIGTERM."""
    server = await start_standin(root, host, port, faults=faults, missing=missing,
                                 polygon_root=polygon_root, polygon_api_key=polygon_api_key,
                                 deriv_root=deriv_root)  # fmt: skip
    print(f"tickpipe-standin: serving {root} at {server.url} "
          f"(datafeed {server.datafeed_url}, json {server.json_url}, polygon "
          f"{server.polygon_url}, deriv {server.deriv_url})", flush=True)  # fmt: skip
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> None:
    """Console entry point ``tickpipe-standin``."""
    args = parse_args(argv)
    root: Path = args.root or default_root()
    if not root.is_dir():
        raise SystemExit(f"tickpipe-standin: {root} is not a directory (use --root)")
    faults = Faults(
        latency_ms=args.latency_ms, jitter_ms=args.jitter_ms, p_500=args.p_500,
        p_503=args.p_503, p_429=args.p_429, retry_after_s=args.retry_after, p_html=args.p_html,
        html_status=args.html_status, p_truncate=args.p_truncate,
        truncate_mode=args.truncate_mode, seed=args.seed,
    )  # fmt: skip
    try:
        faults.validate()
        missing = _missing(args.missing)
    except (ValueError, argparse.ArgumentTypeError) as exc:
        raise SystemExit(f"tickpipe-standin: {exc}") from None
    try:
        asyncio.run(serve(root, args.host, args.port, faults, missing, args.polygon_root,
                          args.deriv_root, args.polygon_api_key))  # fmt: skip
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
