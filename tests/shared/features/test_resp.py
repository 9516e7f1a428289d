"""The event-loop Redis client of the online read path, against the real Redis server."""

from __future__ import annotations

import asyncio
import socket
import uuid

import pytest
import redis
from redis import exceptions as errors

from shared.example.data import departures, load_flights
from shared.example.flights import FLIGHT_FEATURES
from shared.features import OnlineExecutor, RedisStore
from shared.features.resp import AsyncRedis
from shared.features.stores import Event


def test_replies_come_back_in_order_to_concurrent_callers(redis_server) -> None:
    client = AsyncRedis(redis_server.url)
    name = f"test-resp-{uuid.uuid4().hex[:8]}"

    async def run() -> list[object]:
        await client.call("DEL", name)
        return await asyncio.gather(*(client.call("INCR", name) for _ in range(200)))

    try:
        assert sorted(asyncio.run(run())) == list(range(1, 201))  # type: ignore[type-var]
        assert asyncio.run(client.call("GET", name)) == "200"  # a second event loop reconnects
    finally:
        redis.Redis.from_url(redis_server.url).delete(name)
        client.close()


def test_an_error_reply_raises_response_error_and_the_connection_stays_usable(redis_server) -> None:
    client = AsyncRedis(redis_server.url)

    async def run() -> object:
        with pytest.raises(errors.ResponseError, match="unknown command"):
            await client.call("NO-SUCH-COMMAND")
        return await client.call("PING")

    try:
        assert asyncio.run(run()) == "PONG"
    finally:
        client.close()


def test_a_redis_that_forgot_the_script_is_answered_by_eval(redis_server) -> None:
    store = RedisStore(redis_server.url, prefix=f"test-{uuid.uuid4().hex[:8]}")
    flights = load_flights((1,))
    day = flights[(flights["month"] == 1) & (flights["day"] == 10)]
    source = FLIGHT_FEATURES.source("departures")
    events = [Event.from_record(source, r) for r in departures(day).to_dict("records")]
    store.write("departures", events)
    executor = OnlineExecutor(FLIGHT_FEATURES, store)
    requests = day.head(20).to_dict("records")
    try:
        expected = executor.matrix(requests)
        redis.Redis.from_url(redis_server.url).script_flush()
        got = asyncio.run(executor.matrix_async(requests))
        assert got.tobytes() == expected.tobytes()
    finally:
        store.clear()


def test_connection_refused_is_a_connection_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens once closed
    client = AsyncRedis(f"redis://127.0.0.1:{port}/0?socket_connect_timeout=1")
    with pytest.raises(errors.ConnectionError, match="cannot connect"):
        asyncio.run(client.call("PING"))


def test_a_silent_server_times_out_and_the_next_call_reconnects() -> None:
    # A listening socket that never answers: the way a hung Redis looks to a client.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        silent.settimeout(10)  # only so that a connection never made fails the test instead of hanging
        port = silent.getsockname()[1]
        client = AsyncRedis(f"redis://127.0.0.1:{port}/0?socket_timeout=0.3")

        def accept() -> socket.socket:
            connection, _ = silent.accept()
            connection.settimeout(10)
            return connection

        def wait_closed(connection: socket.socket) -> None:
            # Read what the client sent until it closes (or resets) its end; socket.timeout if it never does.
            try:
                while connection.recv(1024):
                    pass
            except ConnectionResetError:
                pass

        async def run() -> None:
            # The URL's socket_timeout is the one applied (not the 5 s default): the error names it.
            with pytest.raises(errors.TimeoutError, match=r"within 0\.3 s"):
                await client.call("PING")
            # Blocking socket calls run in a thread, so the client's loop can close its side.
            first = await asyncio.to_thread(accept)
            with first:
                await asyncio.to_thread(wait_closed, first)  # the timed-out connection is dropped
                with pytest.raises(errors.TimeoutError, match=r"within 0\.3 s"):
                    await client.call("PING")
                second = await asyncio.to_thread(accept)  # the next call opened a fresh connection
                second.close()

        asyncio.run(run())


def test_the_url_selects_the_database_and_a_refused_password_is_an_error(redis_server) -> None:
    base = redis_server.url.rsplit("/", 1)[0]
    name = f"test-resp-{uuid.uuid4().hex[:8]}"
    client = AsyncRedis(f"{base}/3")
    try:
        assert asyncio.run(client.call("SET", name, "in three")) == "OK"
        assert redis.Redis.from_url(f"{base}/3").get(name) == b"in three"
        assert redis.Redis.from_url(f"{base}/0").get(name) is None
    finally:
        redis.Redis.from_url(f"{base}/3").delete(name)
        client.close()
    host_port = base.split("://", 1)[1]
    with pytest.raises(errors.ResponseError, match="AUTH"):  # this Redis has no password set
        asyncio.run(AsyncRedis(f"redis://:wrong@{host_port}/0").call("PING"))


def test_a_unix_socket_url_connects_there(tmp_path) -> None:
    path = str(tmp_path / "silent.sock")
    with socket.socket(socket.AF_UNIX) as silent:
        silent.bind(path)
        silent.listen()
        client = AsyncRedis(f"unix://{path}?socket_timeout=0.2")
        with pytest.raises(errors.TimeoutError):  # connected (to the socket), then no answer
            asyncio.run(client.call("PING"))
    with pytest.raises(errors.ConnectionError, match=r"silent\.sock"):
        asyncio.run(AsyncRedis(f"unix://{path}").call("PING"))
