"""HTTP API: app factory, auth dependencies and error handlers; domain routers live in domains."""
