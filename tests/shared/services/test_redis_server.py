"""Redis started by shared.services, used through the redis client as the patterns do."""

from __future__ import annotations

import uuid

import redis

from shared.services import Endpoint


def test_set_get_hash_and_expiry(redis_server: Endpoint) -> None:
    client = redis.Redis.from_url(redis_server.url)
    key = f"test:{uuid.uuid4().hex}"
    try:
        assert client.ping()
        client.hset(key, mapping={"carrier": "UA", "delay": "17"})
        client.expire(key, 60)
        assert client.hgetall(key) == {b"carrier": b"UA", b"delay": b"17"}
        assert 0 < client.ttl(key) <= 60
        with client.pipeline() as pipe:
            pipe.hincrby(key, "delay", 3).hget(key, "delay")
            assert pipe.execute() == [20, b"20"]
    finally:
        client.delete(key)
        client.close()


def test_server_binds_loopback_only(redis_server: Endpoint) -> None:
    client = redis.Redis.from_url(redis_server.url)
    try:
        assert client.config_get("bind")["bind"] == "127.0.0.1"
        assert int(client.config_get("port")["port"]) == redis_server.port
    finally:
        client.close()
