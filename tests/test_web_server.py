"""quaero's waitress server (quaero.web.server) in-process: what a streamed answer costs."""

from __future__ import annotations

import threading
import tracemalloc

import requests

from quaero.config import ServerConfig
from quaero.web.server import create_server

CHUNK = b"x" * 65_535 + b"\n"
CHUNKS = 768  # 48 MiB, like the export of a tree of 150,000 jobs


def streaming_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/x-ndjson")])
    return (CHUNK for _ in range(CHUNKS))


def test_a_streamed_answer_holds_a_bounded_buffer_not_everything_it_sent():
    """Waitress appends a chunked answer to one in-memory buffer that keeps every byte
    already sent until the buffer reaches outbuf_high_watermark: 16 MiB by default, per
    streaming answer, and the process keeps that memory after. The server's watermark
    bounds it."""
    server = create_server(streaming_app, ServerConfig(), port=0, threads=2)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    tracemalloc.start()
    try:
        received = 0
        url = f"http://127.0.0.1:{server.effective_port}/"
        with requests.get(url, stream=True, timeout=30) as response:
            for chunk in response.iter_content(65_536):
                received += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        server.close()
        thread.join(timeout=5)
    assert received == len(CHUNK) * CHUNKS
    assert peak < 6 * 2**20, f"{peak / 2**20:.1f} MiB held while streaming"
