"""The functional tier: the worker's stages and API in one process, no broker (city.py)."""

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from citybrain.config import Config

from .city import City


@pytest.fixture(scope="session")
def config():
    return Config()


@pytest.fixture
def city(config):
    return City(config)


@pytest.fixture
async def http(city):
    """The API of ``city`` over HTTP (aiohttp's test server on 127.0.0.1)."""
    app = web.Application()
    api = city.api()
    api.install(app)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client
    await api.close()
