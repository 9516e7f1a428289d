"""nginx started by shared.services, proxying to small upstreams, switched by a graceful reload as
the REST pattern's blue-green switch does it."""

from __future__ import annotations

import http.server
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.services import Endpoint, ServiceError, nginx
from tests.conftest import free_port


class _Upstream:
    """A tiny HTTP server in a thread that answers every GET with its own colour."""

    def __init__(self, colour: str) -> None:
        body = colour.encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def upstreams() -> Iterator[dict[str, _Upstream]]:
    ups = {"blue": _Upstream("blue"), "green": _Upstream("green")}
    yield ups
    for up in ups.values():
        up.close()


@pytest.fixture()
def site(nginx_server: Endpoint) -> Iterator[Path]:
    path = nginx.conf_dir() / f"test_{uuid.uuid4().hex[:8]}.conf"
    yield path
    path.unlink(missing_ok=True)
    nginx.reload()


def _site(listen: int, upstream_port: int, name: str) -> str:
    return (
        f"upstream {name} {{ server 127.0.0.1:{upstream_port}; }}\n"
        f"server {{ listen 127.0.0.1:{listen}; location / {{ proxy_pass http://{name}; }} }}\n"
    )


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return str(resp.read().decode())


def test_status_location_answers(nginx_server: Endpoint) -> None:
    assert "Active connections" in _get(nginx_server.extra["status_url"])
    assert nginx_server.extra["conf_d"] == str(nginx.conf_dir())


def test_proxy_switches_upstream_on_reload(upstreams: dict[str, _Upstream], site: Path) -> None:
    listen = free_port()
    name = f"app_{site.stem}"
    site.write_text(_site(listen, upstreams["blue"].port, name))
    nginx.reload()
    assert _get(f"http://127.0.0.1:{listen}/predict") == "blue"

    site.write_text(_site(listen, upstreams["green"].port, name))
    nginx.reload()
    assert {_get(f"http://127.0.0.1:{listen}/predict") for _ in range(5)} == {"green"}


def test_invalid_config_is_rejected_and_the_old_one_keeps_serving(
    nginx_server: Endpoint, upstreams: dict[str, _Upstream], site: Path
) -> None:
    listen = free_port()
    name = f"app_{site.stem}"
    site.write_text(_site(listen, upstreams["blue"].port, name))
    nginx.reload()

    site.write_text("server { listen 127.0.0.1:1; bogus_directive on; }\n")
    with pytest.raises(ServiceError, match="bogus_directive"):
        nginx.reload()
    assert _get(f"http://127.0.0.1:{listen}/") == "blue"
    assert "Active connections" in _get(nginx_server.extra["status_url"])
