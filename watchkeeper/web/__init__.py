"""The web app of `watchkeeper serve`: server-rendered pages (Jinja2), no build step."""
