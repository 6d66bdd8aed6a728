"""qasr.runtime.service: HTTP serving of an export directory (FastAPI + uvicorn, pure Python).

`asr-serve --engine DIR` runs it; `create_app(settings)` builds the ASGI app for other servers.
"""
