"""The run engine: state machine, retry policy and scheduler. Knows no gRPC servicer and no SQL.

The engine talks to the outside through two ports (:mod:`.ports`): a :class:`RunStore` that
persists runs and a :class:`Dispatcher` that calls the user's endpoints and hooks.
"""
