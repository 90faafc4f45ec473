"""The Faust agent, driven with Faust's own ``test_context()`` (no broker)."""

import asyncio
import gc
import json

import pytest

from streamer.app import create_app
from streamer.hosts import ProcessHost
from streamer.pipeline import Pipeline
from streamer.publisher import RedisSink
from streamer.settings import Settings


@pytest.mark.parametrize(
    ("apart", "batch_size"),
    [(False, 1000), (True, 1000), (True, 1)],
    ids=["engine-here", "engine-apart", "engine-apart-reading-ahead"],
)
def test_agent_feeds_batches_to_the_pipeline(fake_redis, apart, batch_size):
    """With the engine in a process of its own, the agent reads the next batch while the
    engine learns the last one when the batch came full (``app._overlapped``; batches of one
    here): the same events, lists, dead letters."""
    settings = Settings(
        n_factors=4, app_id="test-agent", batch_within_s=0.01, batch_size=batch_size
    )
    dead = []

    async def send(key, value):
        dead.append(json.loads(value))

    host = ProcessHost(settings) if apart else None
    pipeline = Pipeline(settings, RedisSink(fake_redis, "t:"), send, host=host)
    app, _ = create_app(settings, pipeline=pipeline)
    agent = app.agents["streamrec.clicks"]

    async def drive():
        async with agent.test_context() as test_agent:
            await test_agent.put(json.dumps({"user": "u1", "item": "i1"}).encode())
            await test_agent.put(b"not json")
            for _ in range(100):
                if pipeline.stats.events >= 2:
                    break
                await asyncio.sleep(0.02)

    try:
        asyncio.run(drive())
    finally:
        pipeline.host.close()
    assert pipeline.stats.events == 2
    assert "t:rec:u1" in fake_redis.data
    assert len(dead) == 1 and dead[0]["reason"].startswith("not JSON")
    assert pipeline.status.interactions == 1


def test_the_worker_connects_with_the_kafka_credentials_of_its_settings(fake_redis, tmp_path):
    import faust

    settings = Settings(
        app_id="test-sasl",
        state_dir=str(tmp_path),
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-256",
        kafka_username="svc",
        kafka_password="secret",
    )
    pipeline = Pipeline(settings, RedisSink(fake_redis, "t:"), lambda k, v: None)
    app, _ = create_app(settings, pipeline=pipeline)
    credentials = app.conf.broker_credentials
    assert isinstance(credentials, faust.SASLCredentials)
    assert (credentials.username, credentials.password) == ("svc", "secret")
    assert (
        credentials.protocol.value == "SASL_SSL" and credentials.mechanism.value == "SCRAM-SHA-256"
    )
    assert (
        create_app(Settings(app_id="plain", state_dir=str(tmp_path)), pipeline)[
            0
        ].conf.broker_credentials
        is None
    )


def test_a_broker_that_does_not_answer_does_not_cost_the_snapshot(
    fake_redis, tmp_path, monkeypatch
):
    """At start, the snapshot's last messages are read back to tell its log from another one
    (a memory-only broker restarted): a broker that does not answer says nothing of its log,
    so the learned state is kept; a different message there is another log."""
    from streamer import app as app_module
    from streamer import snapshot
    from streamer.engine import Engine
    from streamer.events import Click
    from streamer.stack import UNANSWERED

    settings = Settings(n_factors=4, state_dir=str(tmp_path), engine_process=False)
    engine = Engine(settings)
    engine.process([Click(user="u", item="i", type="click", ts=1.0)])
    snapshot.save(engine, {"clicks": {0: 10}}, settings.snapshot_path, stamps={"clicks": {0: 7}})
    sink = RedisSink(fake_redis, "t:")
    for answer, kept in ((UNANSWERED, True), (7, True), (8, False), (None, False)):
        monkeypatch.setattr(app_module, "timestamps_at", lambda *a, answer=answer, **k: {
            ("clicks", 0): answer
        })  # fmt: skip
        gc.unfreeze()
        work = app_module._restored(settings, sink, lambda k, v: None)
        assert (work.engine.events == 1) is kept, answer
        assert (work.offsets == {"clicks": {0: 10}}) is kept, answer
        # a resumed state leaves the cyclic collector's walks at once (not a discarded one)
        assert (gc.get_freeze_count() > 0) is kept, answer


def test_a_worker_started_while_the_broker_is_away_waits_for_it_to_check_its_snapshot(
    fake_redis, tmp_path, monkeypatch
):
    """The snapshot's log is checked once the broker answers; until then the start waits
    (and says so), rather than ending with the kafka client's timeout."""
    from kafka.errors import KafkaTimeoutError

    from streamer import app as app_module
    from streamer import snapshot
    from streamer.engine import Engine
    from streamer.events import Click

    settings = Settings(n_factors=4, state_dir=str(tmp_path), engine_process=False)
    engine = Engine(settings)
    engine.process([Click(user="u", item="i", type="click", ts=1.0)])
    snapshot.save(engine, {"clicks": {0: 10}}, settings.snapshot_path, stamps={"clicks": {0: 7}})
    answers = iter([KafkaTimeoutError("Unable to bootstrap"), KafkaTimeoutError("again"), 7])
    slept: list[float] = []

    def timestamps_at(*args, **kwargs):
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return {("clicks", 0): answer}

    monkeypatch.setattr(app_module, "timestamps_at", timestamps_at)
    monkeypatch.setattr("time.sleep", slept.append)
    work = app_module._restored(settings, RedisSink(fake_redis, "t:"), lambda k, v: None)
    assert slept == [app_module.BROKER_RETRY_S] * 2
    assert work.engine.events == 1 and work.offsets == {"clicks": {0: 10}}
