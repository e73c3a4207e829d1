"""``failhook certs``: development certificates."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from failhook.certs import init_dev_certs, spiffe_id

__all__ = ["add_parser", "init_command"]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``certs init DIR [--force] [--days N]`` to the ``failhook`` command line.

    Args:
        subparsers: The ``failhook`` parser's subcommands.
    """
    certs = subparsers.add_parser(
        "certs", help="development certificates", description="Development certificates for mutual TLS."
    )
    actions = certs.add_subparsers(title="actions", dest="certs_action", metavar="ACTION", required=True)
    init = actions.add_parser(
        "init",
        help="create a dev CA and certificates for the orchestrator, a worker and an operator",
        description=(
            "Create ca.pem, ca-key.pem and <name>.pem / <name>-key.pem for orchestrator, worker and "
            "operator in DIR. For development only: the CA key is stored next to the certificates."
        ),
    )
    init.add_argument("directory", metavar="DIR", type=Path, help="where to write the files")
    init.add_argument("--force", action="store_true", help="replace existing files")
    init.add_argument("--days", type=int, default=365, metavar="N", help="validity in days (default: 365)")
    init.set_defaults(func=init_command)


def init_command(args: argparse.Namespace) -> int:
    """Create the dev certificates and print how to use them.

    Args:
        args: ``directory``, ``force`` and ``days``.

    Returns:
        0 on success, 1 when files exist (without ``--force``) or the arguments are invalid.
    """
    try:
        made = init_dev_certs(args.directory, overwrite=args.force, valid_days=args.days)
    except (FileExistsError, ValueError) as err:
        print(f"failhook certs init: {err}", file=sys.stderr)
        return 1
    orchestrator, worker, operator = (made.tls_files(n) for n in ("orchestrator", "worker", "operator"))
    print(f"Created a development CA and certificates in {made.directory}:")
    for path in made.paths():
        print(f"  {path}")
    print(
        f"""
Keep {made.ca_key.name} private; it can mint certificates every failhook party trusts.
Each certificate is valid for localhost, 127.0.0.1 and ::1 for {args.days} days.

Orchestrator ({spiffe_id("orchestrator")}, role admin):
  failhook-orchestrator serve --tls-ca {orchestrator.ca} --tls-cert {orchestrator.cert} \\
      --tls-key {orchestrator.key}

Worker serving workflow endpoints and failure hooks ({spiffe_id("worker")}, roles submit, read):
  CA {worker.ca}, certificate {worker.cert}, key {worker.key}
  (allow the orchestrator's identity {spiffe_id("orchestrator")} to call it)

Operator using the failhook CLI ({spiffe_id("operator")}, roles read, operate):
  CA {operator.ca}, certificate {operator.cert}, key {operator.key}"""
    )
    return 0
