"""The HTTP API and the operator console, served by each worker's web server."""
