"""Redis Streams: a relay destination, through redis-py's asyncio client."""

from twofold.adapters.redis_streams.publisher import (
    RedisStreamsPublisher,
    RedisStreamsSettings,
    open_redis_publisher,
)

__all__ = ["RedisStreamsPublisher", "RedisStreamsSettings", "open_redis_publisher"]
