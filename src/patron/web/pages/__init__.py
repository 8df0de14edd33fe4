"""Page modules of the web admin, one ``router`` each (see ``patron.web.routes``)."""
