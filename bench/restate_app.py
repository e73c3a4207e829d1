"""The Restate peer's user side, run by ``bench/peers.py`` with the peers' venv (``make bench-peers``).

Two commands, each its own process:

- ``serve --port P``: the same 3-step workflow as failhook's ``bench3`` as a Restate service
  (``Bench/run``: three ``ctx.run_typed`` steps), served over HTTP by Hypercorn, as Restate's Python
  SDK documents it;
- ``drive --ingress URL --runs N --concurrency C --out F``: the closed loop, ``C`` coroutines each
  calling ``POST <ingress>/Bench/run`` and waiting for the answer (an HTTP/1.1 keep-alive
  ``aiohttp`` session, one connection per coroutine) until ``N`` calls have finished. Writes the
  seconds and the client-side latencies as JSON to ``F``.

    bench/.peers/venv/bin/python bench/restate_app.py serve --port 9080
    bench/.peers/venv/bin/python bench/restate_app.py drive --ingress http://127.0.0.1:8080 \\
        --runs 300 --concurrency 64 --out /tmp/restate.json
"""

# mypy: disable-error-code="import-not-found,untyped-decorator,no-any-return"
# (the peers' packages live in bench/.peers/venv, not in the project's: mypy cannot see them)

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import hypercorn.asyncio
import hypercorn.config
import restate

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: ``bench`` importable
from bench.drive import closed_loop, peer_commands, write_figures

bench = restate.Service("Bench")


async def bench_step(value: int) -> int:
    return value + 1


@bench.handler()
async def run(ctx: restate.Context, value: int) -> int:
    """Three trivial durable steps: the cost measured is the durable execution, not the work."""
    a = await ctx.run_typed("one", bench_step, restate.RunOptions(), value)
    b = await ctx.run_typed("two", bench_step, restate.RunOptions(), a)
    return await ctx.run_typed("three", bench_step, restate.RunOptions(), b)


app = restate.app([bench])


async def serve(port: int) -> None:
    config = hypercorn.config.Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.loglevel = "WARNING"
    await hypercorn.asyncio.serve(app, config)


async def call(session: aiohttp.ClientSession, url: str) -> None:
    async with session.post(url, json=0) as response:
        body = await response.read()
        if response.status != 200 or json.loads(body) != 3:
            raise SystemExit(f"Restate answered {response.status}: {body[:200]!r}")


async def drive(ingress: str, runs: int, concurrency: int, ready_timeout: float = 60) -> dict[str, Any]:
    """Wait until the service answers, then ``runs`` calls ``concurrency`` at a time."""
    url = f"{ingress}/Bench/run"
    connector = aiohttp.TCPConnector(limit=concurrency, keepalive_timeout=60)
    async with aiohttp.ClientSession(connector=connector) as session:
        deadline = time.monotonic() + ready_timeout
        while True:  # right after registration the partitions may still be electing leaders
            try:
                await call(session, url)
                break
            except (aiohttp.ClientError, SystemExit):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
        return await closed_loop(lambda: call(session, url), runs, concurrency)


def main() -> None:
    parser, serve_cmd, drive_cmd = peer_commands(
        __doc__, "serve the Bench service over HTTP (Hypercorn)", "call Bench/run through the ingress"
    )
    serve_cmd.add_argument("--port", type=int, required=True)
    drive_cmd.add_argument("--ingress", required=True, help="the ingress URL, http://127.0.0.1:PORT")
    args = parser.parse_args()
    if args.command == "serve":
        asyncio.run(serve(args.port))
    else:
        write_figures(args.out, asyncio.run(drive(args.ingress, args.runs, args.concurrency)))


if __name__ == "__main__":
    main()
