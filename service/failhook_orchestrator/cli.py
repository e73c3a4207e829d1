"""``failhook-orchestrator``: the operator's command to run the orchestrator."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import uvloop

from .config import ConfigError, load_settings
from .server import serve
from .telemetry import TraceIdFilter, configure_from_environment

__all__ = ["main"]


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "trace_id": getattr(record, "trace_id", "-"),
            "span_id": getattr(record, "span_id", "-"),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def _setup_logging(fmt: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(TraceIdFilter())
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [trace=%(trace_id)s]: %(message)s")
        )
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="failhook-orchestrator", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve_cmd = sub.add_parser("serve", help="run the orchestrator until SIGTERM / SIGINT")
    env = "environment variable"
    serve_cmd.add_argument("--config", type=Path, help=f"TOML settings file ({env} FAILHOOK_CONFIG)")
    serve_cmd.add_argument(
        "--listen", help=f"HOST:PORT to serve on, default 127.0.0.1:50051 ({env} FAILHOOK_LISTEN)"
    )
    serve_cmd.add_argument(
        "--database",
        help=f"SQLAlchemy URL, default sqlite+aiosqlite:///var/failhook.db ({env} FAILHOOK_DATABASE)",
    )
    serve_cmd.add_argument(
        "--database-pool-size",
        dest="database_pool_size",
        help=f"pooled connections of a PostgreSQL replica, default 10 ({env} FAILHOOK_DATABASE_POOL_SIZE)",
    )
    serve_cmd.add_argument(
        "--database-sqlite-synchronous",
        dest="database_sqlite_synchronous",
        help="FULL (default: a commit survives power loss) or NORMAL"
        f" ({env} FAILHOOK_DATABASE_SQLITE_SYNCHRONOUS)",
    )
    serve_cmd.add_argument("--tls-ca", dest="tls_ca", help=f"CA bundle for mTLS ({env} FAILHOOK_TLS_CA)")
    serve_cmd.add_argument(
        "--tls-cert", dest="tls_cert", help=f"the orchestrator's certificate ({env} FAILHOOK_TLS_CERT)"
    )
    serve_cmd.add_argument("--tls-key", dest="tls_key", help=f"its private key ({env} FAILHOOK_TLS_KEY)")
    serve_cmd.add_argument(
        "--insecure",
        action="store_const",
        const=True,
        default=None,
        help=f"plaintext, no authentication: development only ({env} FAILHOOK_INSECURE)",
    )
    serve_cmd.add_argument(
        "--grace-period", dest="grace_period", help=f"shutdown grace in seconds ({env} FAILHOOK_GRACE_PERIOD)"
    )
    serve_cmd.add_argument(
        "--log-format", dest="log_format", help=f"text or json ({env} FAILHOOK_LOG_FORMAT)"
    )
    serve_cmd.add_argument(
        "--log-level", dest="log_level", help=f"e.g. INFO, DEBUG ({env} FAILHOOK_LOG_LEVEL)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``failhook-orchestrator``."""
    args = _parser().parse_args(argv)
    flags = {k: v for k, v in vars(args).items() if k not in ("command", "config")}
    try:
        settings = load_settings(flags, config_file=args.config)
    except ConfigError as exc:
        print(f"failhook-orchestrator: {exc}", file=sys.stderr)
        return 2
    _setup_logging(settings.log.format, settings.log.level)
    configure_from_environment()
    try:
        uvloop.run(serve(settings))
    except OSError as exc:
        logging.getLogger("failhook.orchestrator").error("cannot start: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
