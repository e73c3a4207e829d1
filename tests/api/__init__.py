"""The API surface: bounds, decoding, tokens, redaction and views, over real sockets and mTLS."""
