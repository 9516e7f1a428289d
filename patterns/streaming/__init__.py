"""Streaming pattern: Kafka in, stateful features bootstrapped from history, predictions out.

Blue-green by consumer groups (one per model version, each with its own prediction topic) and a
compacted control topic that the consumer-facing reader follows. See README.md.
"""

__all__: list[str] = []
