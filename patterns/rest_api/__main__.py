"""``python -m patterns.rest_api``: the ``rest`` command group."""

from patterns.rest_api.cli import rest

__all__ = ["rest"]

if __name__ == "__main__":
    rest(prog_name="python -m patterns.rest_api")
