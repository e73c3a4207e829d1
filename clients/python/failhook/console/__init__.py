"""``failhook console``: a web console of the dead-letter queue and the runs.

It is a client of the orchestrator's public gRPC API (never of its database), with the
operator's certificate, so the orchestrator's roles apply to every page and button. Plain HTML
forms and server-side SVG charts: the pages run no JavaScript, and nothing is built or
downloaded at install time.

Modules: :mod:`~failhook.console.command` (the command line), :mod:`~failhook.console.app`
(``create_app``, the Starlette application), :mod:`~failhook.console.access` (the access token
and the anti-forgery tokens), :mod:`~failhook.console.pages` and
:mod:`~failhook.console.actions` (the routes), :mod:`~failhook.console.stats` and
:mod:`~failhook.console.charts` (the overview). Nothing is re-exported here, so that every other
``failhook`` command starts without loading the web stack.
"""
