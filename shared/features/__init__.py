"""Declare features once; compute them offline, online or on a stream with the same answers."""

from shared.features.definitions import (
    AsOfFeature,
    Columns,
    EventSource,
    Feature,
    FeatureSet,
    RowFeature,
    WindowFeature,
    category_codes,
)
from shared.features.offline import OfflineExecutor
from shared.features.online import OnlineExecutor, RequestError
from shared.features.stores import EmbeddedStore, Event, OnlineStore, RedisStore
from shared.features.streaming import StreamingExecutor

__all__ = [
    "AsOfFeature",
    "Columns",
    "EmbeddedStore",
    "Event",
    "EventSource",
    "Feature",
    "FeatureSet",
    "OfflineExecutor",
    "OnlineExecutor",
    "OnlineStore",
    "RedisStore",
    "RequestError",
    "RowFeature",
    "StreamingExecutor",
    "WindowFeature",
    "category_codes",
]
