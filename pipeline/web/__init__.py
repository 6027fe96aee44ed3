"""The driver's small web side: Prometheus metrics, health probes and the live view (starlette + uvicorn)."""
