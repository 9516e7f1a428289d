"""``mlpatterns services up|down|status [NAME ...]``: the local servers the patterns run against."""

from __future__ import annotations

import time

import click

from shared import services as _services
from shared.services import Service, ServiceError

__all__ = ["services", "services_group"]

_NAMES = click.Choice(_services.names())


def _selected(names: tuple[str, ...]) -> list[Service]:
    return [_services.get(n) for n in names] if names else _services.all_services()


@click.group("services", context_settings={"help_option_names": ["-h", "--help"]})
def services_group() -> None:
    """Start, stop and query Redis, Kafka (KRaft), HBase (+Thrift) and nginx on 127.0.0.1.

    Missing pieces are installed on first use: redis-server and nginx from Debian's archive, the
    Kafka and HBase jars from Maven Central (cached in ~/.m2). Data, logs and pid files live in
    MLPATTERNS_SERVICES_DIR (default <checkout>/.services). Ports come from MLPATTERNS_REDIS_PORT (6379),
    MLPATTERNS_KAFKA_PORT (9092), MLPATTERNS_KAFKA_CONTROLLER_PORT (9093),
    MLPATTERNS_HBASE_THRIFT_PORT (9090), MLPATTERNS_HBASE_ZOOKEEPER_PORT (2181),
    MLPATTERNS_HBASE_MASTER_PORT (16000), MLPATTERNS_HBASE_REGIONSERVER_PORT (16020) and
    MLPATTERNS_NGINX_PORT (8080).
    """


@services_group.command()
@click.argument("names", nargs=-1, type=_NAMES)
def up(names: tuple[str, ...]) -> None:
    """Install if needed and start NAMES (default: all); waits until each answers. Idempotent."""
    failed = []
    for svc in _selected(names):
        began = time.monotonic()
        try:
            endpoint = svc.up(progress=lambda m: click.echo(m, err=True))
        except ServiceError as exc:
            click.echo(f"ERROR {exc}", err=True)
            failed.append(svc.name)
            continue
        click.echo(f"{svc.name:<6} up    {endpoint.url}  ({time.monotonic() - began:.1f}s)")
    if failed:
        raise click.ClickException(f"could not start: {', '.join(failed)} (see the log tails above)")


@services_group.command()
@click.argument("names", nargs=-1, type=_NAMES)
def down(names: tuple[str, ...]) -> None:
    """Stop NAMES (default: all) by pid: gracefully, then SIGKILL after a timeout."""
    for svc in reversed(_selected(names)):
        svc.down(progress=lambda m: click.echo(m, err=True))


@services_group.command()
@click.argument("names", nargs=-1, type=_NAMES)
def status(names: tuple[str, ...]) -> None:
    """Query each server over its own protocol; exit 1 unless all selected are running."""
    bad = False
    for svc in _selected(names):
        st = svc.status()
        pids = ",".join(f"{k}={v}" for k, v in st.pids.items()) or "-"
        click.echo(f"{st.name:<6} {st.state:<9} port {st.port:<5} pids {pids:<24} {st.detail}")
        bad = bad or st.state != "running"
    if bad:
        raise SystemExit(1)


#: The name ``patterns/__main__.py`` looks up.
services = services_group
