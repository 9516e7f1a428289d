"""``python -m patterns.mobile``: the mobile pattern's command group."""

from patterns.mobile.cli import mobile

__all__: list[str] = []

if __name__ == "__main__":
    mobile()
