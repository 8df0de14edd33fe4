"""One router module per domain; each is thin: parse, call the service, commit, shape."""
