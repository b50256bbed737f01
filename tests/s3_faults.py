"""A fault-injecting HTTP proxy on 127.0.0.1 in front of the moto S3 server.

It forwards every request, except that it can answer the next N requests with an S3 error
(503 SlowDown by default: throttling) and cut the body of the next GET after K bytes (the
connection closes mid-object). Tests point boto3 at the proxy to prove retries and resumes.

Further faults (the reliability suite): ``chaos(rate, kinds)`` injects, at that rate over all
requests, 503 SlowDown, 500 InternalError, reset connections, truncated GET bodies, 403
AccessDenied and added latency; ``deny(substring)`` answers 403 to matching requests;
``delay(seconds)`` adds latency to every request; ``hold(method, substring)`` makes matching
requests wait until ``release_held()`` (``held`` is set when one arrives), so a test can kill a
process at an exact point (a shard upload, the PUT of RELEASE.json).
"""
from __future__ import annotations

import random
import socket
import time

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
        self.chaos_rate, self.chaos_kinds, self.rng = 0.0, (), random.Random(0)
        self.chaos_fired = 0
        self.by_kind: dict[str, int] = {}
        self.denied: list[str] = []
        self.deny_status, self.deny_code = 403, "AccessDenied"
        self.latency = 0.0
        self.hold_match: tuple[str, str] | None = None
        self.drop_held = False
        self.hold_after = 0
        self.corrupt_match: tuple[str, ...] = ()
        self.corrupt_budget = 0
        self.corrupted = 0
        self.held = threading.Event()
        self._release = threading.Event()
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
                chaos = None
                with proxy.lock:
                    proxy.requests += 1
                    fail = proxy.fail_budget > 0
                    if fail:
                        proxy.fail_budget -= 1
                        proxy.injected += 1
                    elif any(d in self.path for d in proxy.denied):
                        fail, status, code = True, proxy.deny_status, proxy.deny_code
                    cut = None
                    if not fail and self.command == "GET" and proxy.cut_get_after is not None and "list-type" not in self.path:
                        cut, proxy.cut_get_after = proxy.cut_get_after, None
                        proxy.cut += 1
                    if not fail and cut is None and proxy.chaos_rate and proxy.rng.random() < proxy.chaos_rate:
                        chaos = proxy.chaos_kinds[proxy.chaos_fired % len(proxy.chaos_kinds)]  # each kind in turn
                        if chaos == "truncate" and not (self.command == "GET" and "list-type" not in self.path
                                                        and "uploads" not in self.path):
                            chaos = None  # only an object body can be cut short: its turn waits for one
                        else:
                            proxy.chaos_fired += 1
                            proxy.by_kind[chaos] = proxy.by_kind.get(chaos, 0) + 1
                    hold = proxy.hold_match is not None and self.command == proxy.hold_match[0] \
                        and proxy.hold_match[1] in self.path
                    if hold and proxy.hold_after > 0:  # let the first matches through
                        proxy.hold_after -= 1
                        hold = False
                if hold:
                    proxy.held.set()
                    proxy._release.wait()
                    if proxy.drop_held:  # its sender was killed: the request never reaches the store
                        self.close_connection = True
                        self.connection.close()
                        return
                if proxy.latency or chaos == "latency":
                    time.sleep(proxy.latency + (0.5 if chaos == "latency" else 0.0))
                if chaos in ("503", "500", "403"):
                    fail = True
                    status, code = {"503": (503, "SlowDown"), "500": (500, "InternalError"),
                                    "403": (403, "AccessDenied")}[chaos]
                elif chaos == "reset":
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    self.close_connection = True
                    self.connection.close()
                    return
                elif fail and not any(d in self.path for d in proxy.denied):
                    status, code = proxy.fail_status, proxy.fail_code
                if fail:
                    payload = (f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code>"
                               f"<Message>injected by the test proxy</Message></Error>").encode()
                    self.send_response(status)
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
                if chaos == "truncate" and len(data) > 1 and 200 <= resp.status < 300:
                    cut = len(data) // 2  # the body ends half way: the client sees a short read
                corrupt = self.command == "GET" and 200 <= resp.status < 300 and any(
                    c in self.path for c in proxy.corrupt_match) and len(data) > 1000
                if corrupt:
                    with proxy.lock:
                        corrupt = proxy.corrupt_budget > 0
                        proxy.corrupt_budget -= corrupt
                        proxy.corrupted += corrupt
                if corrupt:  # same length, one byte flipped in the middle: only a checksum sees it
                    data = data[:len(data) // 2] + bytes([data[len(data) // 2] ^ 0xFF]) + data[len(data) // 2 + 1:]
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

    def chaos(self, rate: float, kinds=("503", "500", "reset", "truncate", "403", "latency"), seed: int = 0) -> None:
        """From now on, each request fails at ``rate``, with each of ``kinds`` in turn (0 turns it off)."""
        with self.lock:
            self.chaos_rate, self.chaos_kinds, self.rng = rate, tuple(kinds), random.Random(seed)

    def deny(self, substring: str, status: int = 403, code: str = "AccessDenied") -> None:
        """Answer ``status`` (403 AccessDenied by default) to every request whose path contains ``substring``."""
        with self.lock:
            self.denied.append(substring)
            self.deny_status, self.deny_code = status, code

    def allow_all(self) -> None:
        with self.lock:
            self.denied.clear()

    def delay(self, seconds: float) -> None:
        with self.lock:
            self.latency = seconds

    def hold(self, method: str, substring: str, after: int = 0) -> None:
        """Matching requests (after the first ``after``) wait until :meth:`release_held`; ``held``
        is set when one arrives."""
        with self.lock:
            self.hold_match, self.hold_after = (method, substring), after
            self.drop_held = False
            self.held.clear()
            self._release.clear()

    def release_held(self, drop: bool = False) -> None:
        """Let held requests go on (``drop``: close them unanswered, as when their sender died)."""
        with self.lock:
            self.hold_match = None
            self.drop_held = drop
        self._release.set()

    def corrupt_next(self, n: int, substring: str) -> None:
        """Flip one byte in the body of the next ``n`` GETs of objects whose path contains ``substring``."""
        with self.lock:
            self.corrupt_match, self.corrupt_budget = (substring,), n

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
