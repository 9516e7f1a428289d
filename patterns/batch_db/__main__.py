"""``python -m patterns.batch_db`` runs the batch pattern's command group (same as ``mlpatterns batch``)."""

from patterns.batch_db.cli import batch

__all__: list[str] = []

if __name__ == "__main__":
    batch(prog_name="python -m patterns.batch_db")
