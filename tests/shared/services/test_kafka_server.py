"""Kafka (KRaft) started by shared.services, through kafka-python as the streaming pattern uses it:
topics, produce, consume in a group, commit, resume after a consumer restart and after a broker
restart."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

from shared import services
from shared.services import Endpoint

_N = 40


@pytest.fixture()
def topic(kafka_server: Endpoint) -> Iterator[str]:
    name = f"test-{uuid.uuid4().hex[:10]}"
    admin = KafkaAdminClient(bootstrap_servers=kafka_server.address)
    try:
        admin.create_topics([NewTopic(name, num_partitions=2, replication_factor=1)])
    finally:
        admin.close()
    yield name
    # A new client: the test may have restarted the broker under the old one's connection.
    admin = KafkaAdminClient(bootstrap_servers=kafka_server.address)
    try:
        admin.delete_topics([name])
    finally:
        admin.close()


def _produce(address: str, topic: str, n: int) -> None:
    producer = KafkaProducer(bootstrap_servers=address, acks="all", linger_ms=5)
    try:
        for i in range(n):
            producer.send(topic, key=f"k{i % 5}".encode(), value=f"{i}".encode())
        producer.flush(timeout=30)
    finally:
        producer.close()


def _consumer(address: str, topic: str, group: str) -> KafkaConsumer:
    return KafkaConsumer(
        topic,
        bootstrap_servers=address,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=10_000,
    )


def _take(consumer: KafkaConsumer, n: int) -> list[int]:
    values: list[int] = []
    for message in consumer:
        values.append(int(message.value))
        if len(values) == n:
            break
    return values


def test_topic_is_created_with_its_partitions(kafka_server: Endpoint, topic: str) -> None:
    consumer = KafkaConsumer(bootstrap_servers=kafka_server.address)
    try:
        assert topic in consumer.topics()
        assert consumer.partitions_for_topic(topic) == {0, 1}
    finally:
        consumer.close()


def test_group_resumes_from_committed_offset(kafka_server: Endpoint, topic: str) -> None:
    _produce(kafka_server.address, topic, _N)
    group = f"g-{uuid.uuid4().hex[:8]}"

    first = _consumer(kafka_server.address, topic, group)
    seen = _take(first, _N // 2)
    first.commit()
    first.close()
    assert len(seen) == _N // 2

    # A new consumer in the same group starts where the committed offsets point: no gap, no repeat.
    second = _consumer(kafka_server.address, topic, group)
    rest = _take(second, _N - len(seen))
    second.close()
    assert sorted(seen + rest) == list(range(_N))


def test_data_and_offsets_survive_a_broker_restart(kafka_server: Endpoint, topic: str) -> None:
    _produce(kafka_server.address, topic, _N)
    group = f"g-{uuid.uuid4().hex[:8]}"
    consumer = _consumer(kafka_server.address, topic, group)
    seen = _take(consumer, 10)
    consumer.commit()
    committed = {tp: consumer.committed(tp) for tp in consumer.assignment()}
    consumer.close()

    kafka = services.get("kafka")
    pid_before = kafka.running()["kafka"]
    try:
        kafka.down()
        assert not kafka.running()
        assert kafka.status().state == "stopped"
    finally:
        # Other tests use this broker later in the session: bring it back whatever happened.
        endpoint = kafka.up()
    assert endpoint.address == kafka_server.address
    assert kafka.running()["kafka"] != pid_before
    assert kafka.status().state == "running"

    # Every message is still there for a fresh group...
    fresh = _consumer(kafka_server.address, topic, f"g-{uuid.uuid4().hex[:8]}")
    everything = _take(fresh, _N)
    fresh.close()
    assert sorted(everything) == list(range(_N))

    # ... and the old group's committed offsets were kept, so it continues after what it saw.
    resumed = _consumer(kafka_server.address, topic, group)
    rest = _take(resumed, _N - len(seen))
    for tp, offset in committed.items():
        assert resumed.committed(TopicPartition(tp.topic, tp.partition)) == offset
    resumed.close()
    assert sorted(seen + rest) == list(range(_N))
