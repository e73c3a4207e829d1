"""The failhook orchestrator: durable workflow runs, retries, failure hooks and the DLQ."""
