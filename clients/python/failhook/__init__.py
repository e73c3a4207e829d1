"""failhook's Python SDK: workflow endpoints, typed failure hooks and the orchestrator client.

- :mod:`failhook.worker`: write workflows (``ctx.run``, ``ctx.sleep``) and failure handlers, and
  serve them (:class:`failhook.worker.Worker`).
- :mod:`failhook.client`: :class:`OrchestratorClient`, start and watch runs, operate the DLQ.
- :mod:`failhook.tls` / :mod:`failhook.certs`: mTLS credentials and development certificates.
- :mod:`failhook.testing`: a real orchestrator process for your own tests.
- :mod:`failhook.v1`: the generated messages and stubs of the contract.
"""

from failhook.client import OrchestratorClient
from failhook.tls import TLSFiles

__all__ = ["OrchestratorClient", "TLSFiles"]
