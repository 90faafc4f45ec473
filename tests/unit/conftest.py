import gc
import json

import pytest
import redis

from streamer.events import Click, ContextEvent, ItemEvent
from streamer.pipeline import Message


class FakeRedis:
    """The slice of redis-py the sink and the read helper use."""

    def __init__(self):
        self.data = {}
        self.pipelines = 0
        self.down = False  # an outage: every pipeline fails, nothing is written
        self._batch = {}

    def ping(self):
        return True

    def pipeline(self, transaction=False):
        self.pipelines += 1
        return self

    def set(self, key, value, ex=None):
        self._batch[key] = value

    def execute(self):
        batch, self._batch = self._batch, {}
        if self.down:
            raise redis.ConnectionError("down")
        self.data.update(batch)
        return []

    def mget(self, keys):
        return [self.data.get(k) for k in keys]

    def get(self, key):
        return self.data.get(key)

    def json(self, key):
        return json.loads(self.data[key])


@pytest.fixture
def fake_redis():
    return FakeRedis()


def message(topic, value, offset=0, key=b"k"):
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return Message(topic, 0, offset, key, raw, 1.0)


def catalogue_events():
    """Six items in two genres, with a known answer for who likes what."""
    return [
        ItemEvent(item=f"{genre[0]}{i}", ts=0.0, title=f"{genre} {i}", tags=[genre])
        for genre in ("horror", "comedy")
        for i in range(3)
    ]


__all__ = ["Click", "ContextEvent", "catalogue_events", "message"]


@pytest.fixture(autouse=True)
def _unfrozen():
    """What a test froze out of the cyclic collector (a worker's restore, its report timer:
    ``gc.freeze()``) goes back to it after the test: the suite's process is not a worker."""
    yield
    gc.unfreeze()
