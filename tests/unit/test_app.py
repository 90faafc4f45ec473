"""The Faust agent, driven with Faust's own ``test_context()`` (no broker)."""

import asyncio
import json

from streamer.app import create_app
from streamer.pipeline import Pipeline
from streamer.publisher import RedisSink
from streamer.settings import Settings


def test_agent_feeds_batches_to_the_pipeline(fake_redis):
    settings = Settings(n_factors=4, app_id="test-agent", batch_within_s=0.01)
    dead = []

    async def send(key, value):
        dead.append(json.loads(value))

    pipeline = Pipeline(settings, RedisSink(fake_redis, "t:"), send)
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

    asyncio.run(drive())
    assert pipeline.stats.events == 2
    assert "t:rec:u1" in fake_redis.data
    assert len(dead) == 1 and dead[0]["reason"].startswith("not JSON")


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
