"""The orchestrator's gRPC servicers: validate, call the engine, map the result and errors."""
