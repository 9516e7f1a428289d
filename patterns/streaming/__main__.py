"""``python -m patterns.streaming``: the streaming pattern's command group."""

from patterns.streaming.cli import stream

__all__: list[str] = []

if __name__ == "__main__":
    stream(prog_name="python -m patterns.streaming")
