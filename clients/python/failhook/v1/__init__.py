"""Generated code of the failhook.v1 contract (``make generate``); never edit by hand."""
