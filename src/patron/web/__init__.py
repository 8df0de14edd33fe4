"""Server-rendered admin and member pages (Jinja2 + htmx), in English and Chinese."""
