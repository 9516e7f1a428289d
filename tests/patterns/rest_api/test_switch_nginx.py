"""The REST pattern's nginx front on the real nginx: validated before reload, weights, access log."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from patterns.rest_api.nginx import RestFront
from shared.services import ServiceError
from shared.services.nginx import Nginx


def _backend(name: str) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", 0)))
            body = name.encode()
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def front(nginx_server: Any, rest_free_port: Callable[[], int]) -> Iterator[RestFront]:
    f = RestFront(Nginx(), port=rest_free_port(), name=f"rest_api_test_{uuid.uuid4().hex[:8]}")
    yield f
    f.remove()
    f.access_log.unlink(missing_ok=True)


def test_weights_split_traffic_and_the_access_log_names_the_colour(front: RestFront) -> None:
    blue, green = _backend("blue"), _backend("green")
    try:
        bp, gp = blue.server_address[1], green.server_address[1]
        front.apply({bp: 0.8, gp: 0.2})
        with httpx.Client(timeout=5) as client:
            answers = [client.post(front.url + "/predict", content=b"{}").text for _ in range(200)]
        assert 0.1 < answers.count("green") / len(answers) < 0.3
        records = list(front.records())
        assert len(records) == 200 and all(r.status == 200 and r.path == "/predict" for r in records)
        to_green = sum(r.upstream == f"127.0.0.1:{gp}" for r in records)
        assert to_green == answers.count("green")
        front.apply({gp: 1.0})
        assert httpx.post(front.url + "/predict", content=b"{}", timeout=5).text == "green"
    finally:
        blue.shutdown()
        green.shutdown()


def test_an_invalid_config_is_refused_and_the_previous_one_keeps_serving(
    front: RestFront, monkeypatch: pytest.MonkeyPatch
) -> None:
    blue = _backend("blue")
    try:
        front.apply({blue.server_address[1]: 1.0})
        good = front.conf_file.read_text()
        monkeypatch.setattr(front, "render", lambda backends: "upstream broken { server ; }\n")
        with pytest.raises(ServiceError, match="config test"):
            front.apply({blue.server_address[1]: 1.0})
        assert front.conf_file.read_text() == good
        assert httpx.post(front.url + "/predict", content=b"{}", timeout=5).text == "blue"
    finally:
        blue.shutdown()
