"""The JSON API (``/api/v1``) and the ASGI application that also serves the web pages."""
