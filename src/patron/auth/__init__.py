"""Staff users, roles, API keys, web sessions and the audit log."""
