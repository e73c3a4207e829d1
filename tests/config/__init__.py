"""The configuration: every section, checked whole; errors name the key (issue 13 item 5)."""
