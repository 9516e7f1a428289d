"""HBase started by shared.services, through happybase (Thrift 1) as the batch pattern uses it."""

from __future__ import annotations

import uuid

import happybase

from shared.services import Endpoint


def test_create_batch_put_scan_delete(hbase_server: Endpoint) -> None:
    name = f"test_{uuid.uuid4().hex[:10]}"
    conn = happybase.Connection(hbase_server.host, hbase_server.port, timeout=30_000)
    try:
        conn.create_table(name, {"p": {"max_versions": 1}})
        assert name.encode() in conn.tables()
        table = conn.table(name)
        with table.batch(batch_size=50) as batch:
            for day in range(1, 31):
                for flight in range(5):
                    batch.put(
                        f"2013-01-{day:02d}#{flight}".encode(), {b"p:score": f"{day}.{flight}".encode()}
                    )

        rows = dict(table.scan(row_prefix=b"2013-01-07#"))
        assert sorted(rows) == [f"2013-01-07#{f}".encode() for f in range(5)]
        assert rows[b"2013-01-07#3"] == {b"p:score": b"7.3"}
        assert sum(1 for _ in table.scan(row_start=b"2013-01-10", row_stop=b"2013-01-20")) == 50

        table.delete(b"2013-01-07#3")
        assert table.row(b"2013-01-07#3") == {}
        assert len(dict(table.scan(row_prefix=b"2013-01-07#"))) == 4
    finally:
        if name.encode() in conn.tables():
            conn.delete_table(name, disable=True)
        conn.close()
    check = happybase.Connection(hbase_server.host, hbase_server.port)
    try:
        assert name.encode() not in check.tables()
    finally:
        check.close()
