"""failhook's Python SDK: workflow endpoints, typed failure hooks and the orchestrator client."""
