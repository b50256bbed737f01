"""A fault-injecting HTTP proxy on 127.0.0.1 in front of the moto S3 server.

It forwards every request, except that it can answer the next N requests with an S3 error
(503 SlowDown by default: throttling) and cut the body of the next GET after K bytes (the
connection closes mid-object). Tests point boto3 at the proxy to prove retries and resumes.
"""
from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade"}


class FaultProxy:
    def __init__(self, upstream: str):
        parsed = urlparse(upstream)
        self.upstream = (parsed.hostname, parsed.port)
        self.lock = threading.Lock()
        self.fail_budget = 0
        self.fail_status, self.fail_code = 503, "SlowDown"
        self.cut_get_after: int | None = None
        self.requests = 0
        self.injected = 0
        self.cut = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    data = bytearray()
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return bytes(data)
                        data += self.rfile.read(size)
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))

            def _handle(self):
                body = self._body()
                with proxy.lock:
                    proxy.requests += 1
                    fail = proxy.fail_budget > 0
                    if fail:
                        proxy.fail_budget -= 1
                        proxy.injected += 1
                    cut = None
                    if not fail and self.command == "GET" and proxy.cut_get_after is not None and "list-type" not in self.path:
                        cut, proxy.cut_get_after = proxy.cut_get_after, None
                        proxy.cut += 1
                if fail:
                    payload = (f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{proxy.fail_code}</Code>"
                               f"<Message>injected by the test proxy</Message></Error>").encode()
                    self.send_response(proxy.fail_status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS}
                if body or self.command in ("PUT", "POST"):
                    headers["Content-Length"] = str(len(body))
                conn.request(self.command, self.path, body=body or None, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                self.send_response(resp.status)
                for key, value in resp.getheaders():
                    if key.lower() not in _HOP_HEADERS and key.lower() != "content-length":
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                if cut is not None:
                    self.send_header("Connection", "close")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data if cut is None else data[:cut])
                if cut is not None:
                    self.wfile.flush()
                    self.close_connection = True

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def fail_next(self, n: int, status: int = 503, code: str = "SlowDown") -> None:
        with self.lock:
            self.fail_budget, self.fail_status, self.fail_code = n, status, code

    def cut_next_get(self, after_bytes: int) -> None:
        with self.lock:
            self.cut_get_after = after_bytes

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
