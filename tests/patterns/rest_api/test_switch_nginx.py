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


def _reload_fails_after_loading(
    front: RestFront, monkeypatch: pytest.MonkeyPatch, recovery_fails: bool
) -> None:
    """The next reload loads the new file and then fails (as when no new worker shows up in time);
    the one after it, the restoring reload, fails without doing anything if ``recovery_fails``."""
    real = front.nginx.reload
    calls = 0

    def reload(timeout: float = 10.0) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            real(timeout)
            raise ServiceError("nginx reload sent but no new worker after 10s (simulated)")
        if calls == 2 and recovery_fails:
            raise ServiceError("nginx reload failed (simulated)")
        real(timeout)

    monkeypatch.setattr(front.nginx, "reload", reload)


@pytest.mark.parametrize(
    "recovery_fails", [False, True], ids=["restored-and-reloaded", "restore-reload-fails"]
)
def test_a_reload_that_fails_after_loading_does_not_leave_nginx_on_the_new_colour(
    front: RestFront, monkeypatch: pytest.MonkeyPatch, recovery_fails: bool
) -> None:
    blue, green = _backend("blue"), _backend("green")
    try:
        bp, gp = blue.server_address[1], green.server_address[1]
        front.apply({bp: 1.0})
        _reload_fails_after_loading(front, monkeypatch, recovery_fails)
        with pytest.raises(ServiceError, match="simulated"):
            front.apply({gp: 1.0})
        assert front.conf_file.read_text() == front.render({bp: 1.0})
        answer = httpx.post(front.url + "/predict", content=b"{}", timeout=5).text
        assert answer == ("green" if recovery_fails else "blue")  # the restored file was reloaded
        # Putting blue back must reach nginx even though the file already says blue.
        front.apply({bp: 1.0})
        assert httpx.post(front.url + "/predict", content=b"{}", timeout=5).text == "blue"
    finally:
        blue.shutdown()
        green.shutdown()
