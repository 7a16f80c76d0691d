"""A real Redis for the cluster tests (CTI_TEST_REDIS, default the local one), each test under
a key prefix of its own that is removed afterwards, so parallel runs do not meet."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from cti.platform.cluster.redis_store import connect
from tests.service.cluster.redis_server import RedisServer

REDIS_URL = os.environ.get("CTI_TEST_REDIS", "redis://127.0.0.1:6379/0")


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = connect(REDIS_URL)
    yield client
    await client.aclose()


@pytest.fixture
async def prefix(redis: Redis) -> AsyncIterator[str]:
    name = f"cti-test-{uuid.uuid4().hex[:12]}:"
    yield name
    keys = [k async for k in redis.scan_iter(match=f"{name}*")]
    if keys:
        await redis.delete(*keys)


@pytest.fixture
async def redis_server() -> AsyncIterator[RedisServer]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = RedisServer(port)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
