"""`wmfactory api`: a trained world model behind an HTTP API (FastAPI on uvicorn, dynamic batching), and
`Client`, its Python client. Nothing is imported here, so that the client does not need the server's packages."""
