"""``tickpipe-stack``: run Kafka, PostgreSQL and the tickpipe services locally, without Docker."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from tickpipe_dev.stack import api
from tickpipe_dev.stack.paths import StackError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tickpipe-stack",
        description="Local Kafka (KRaft) + PostgreSQL + tickpipe services as plain processes. "
        "State lives in .local/ (override with TICKPIPE_LOCAL_DIR).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    up = commands.add_parser("up", help="start everything (idempotent)")
    up.add_argument("--infra-only", action="store_true", help="only Kafka, PostgreSQL and topics")
    up.add_argument(
        "--secure", action="store_true",
        help="Kafka SASL_SSL listener on :9094 (SCRAM-SHA-512) and PostgreSQL TLS only, with a "
        "CA generated in .local/secure; the services use them",
    )  # fmt: skip
    up.add_argument(
        "--replicas",
        metavar="SERVICE=N,...",
        help="replicas of data-path services, e.g. fetcher=2,decoder=2,validator=2,writer=2 "
        "(at most the topics' partition count; remembered for later ups)",
    )
    up.add_argument(
        "--observability",
        action="store_true",
        help="also Prometheus on :9090 scraping every service (data in .local/prometheus)",
    )
    down = commands.add_parser("down", help="stop what up started")
    down.add_argument("--keep-infra", action="store_true", help="stop only services and stand-in")
    status = commands.add_parser("status", help="show components")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    restart = commands.add_parser("restart-service", help="stop and start one component")
    restart.add_argument(
        "name", help=f"one of {', '.join(api.COMPONENTS)}, or a replica such as writer-2"
    )
    commands.add_parser("reset-data", help="stop everything and delete Kafka and PostgreSQL data")
    return parser


def format_status(rows: Sequence[api.ComponentStatus]) -> str:
    """A fixed-width table of ``rows`` (component, pid, port, running, healthy).

    RUNNING is ``foreign`` when the port answers but no process of ours (pid file) is behind it.
    """
    lines = [f"{'COMPONENT':<11} {'PID':>8} {'PORT':>6}  {'RUNNING':<8} HEALTHY"]
    for row in rows:
        pid = str(row.pid) if row.pid is not None else "-"
        # Healthy without a pid of ours: something else (a colleague's shell?) holds the port.
        running = "yes" if row.running else ("foreign" if row.healthy else "no")
        healthy = "yes" if row.healthy else "no"
        detail = f"  {row.detail}" if row.detail else ""
        lines.append(f"{row.name:<11} {pid:>8} {row.port:>6}  {running:<8} {healthy}{detail}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 1 a step failed, 2 usage error)."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "up":
            api.up(
                infra_only=args.infra_only,
                secure_mode=args.secure,
                replica_counts=args.replicas,
                observability=args.observability,
            )
        elif args.command == "down":
            api.down(keep_infra=args.keep_infra)
        elif args.command == "status":
            rows = api.status()
            if args.json:
                print(json.dumps([row.as_dict() for row in rows], indent=2))
            else:
                print(format_status(rows))
        elif args.command == "restart-service":
            api.restart(args.name)
        elif args.command == "reset-data":
            api.reset_data()
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; components started so far keep running (tickpipe-stack down)",
              file=sys.stderr)  # fmt: skip
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
