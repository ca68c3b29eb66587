"""One package per integration: its Python code; its Dockerfile lives in images/."""
