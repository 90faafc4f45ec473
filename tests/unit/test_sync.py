"""Several workers sharing one model (streamer.sync): known answers on small streams."""

import asyncio
import json

import numpy as np
import pytest

from streamer import snapshot, sync
from streamer.engine import Engine
from streamer.events import Click, ItemEvent
from streamer.settings import Settings
from streamer.sync import Delta, Sync

from .conftest import catalogue_events


def settings(**overrides):
    return Settings(**{"n_factors": 6, "top_k": 4, "seed": 3, "sync_interval_s": 1.0, **overrides})


def stream(n, users=60, items=40, seed=0):
    """Clicks of two tastes (even users like even items), with very frequent context features:
    every event carries one of two devices and one of three hours."""
    rng = np.random.default_rng(seed)
    out = []
    for t in range(n):
        user = int(rng.integers(users))
        item = 2 * int(rng.integers(items // 2)) + user % 2
        context = {"device": f"d{t % 2}", "hour": str(t % 3)}
        click = Click(user=f"u{user}", item=f"i{item}", type="click", ts=float(t), context=context)
        out.append(click)
    return out


def items(n=40):
    return [ItemEvent(item=f"i{i}", ts=0.0, tags=[f"t{i % 2}"]) for i in range(n)]


def run(events, workers, every, batch=20, **overrides):
    """``workers`` engines over ``events`` split by user (a user's events on one worker), each
    worker's deltas applied by the others every ``every`` events."""
    engines = [Engine(settings(**overrides)) for _ in range(workers)]
    syncs = [Sync(e, f"w{n}") for n, e in enumerate(engines)]
    for e in engines:
        e.process(items())
    for at in range(0, len(events), batch):
        for n, e in enumerate(engines):
            mine = [c for c in events[at : at + batch] if int(c.user[1:]) % workers == n]
            if mine:
                e.process(mine)
        if (at + batch) % every == 0:
            wire = [[m for _, m in s.outgoing()] for s in syncs]
            for n, s in enumerate(syncs):
                for m, messages in enumerate(wire):
                    for data in messages if m != n else ():
                        s.receive(data)
    return engines, syncs


def rows(engine, keys):
    table = engine.model.ranker.table
    return np.array([table.latents[table.ids[k]] for k in keys])


def test_what_one_worker_learns_of_items_reaches_the_other_exactly():
    a, b = Engine(settings()), Engine(settings())
    sa, sb = Sync(a, "a"), Sync(b, "b")
    for e in (a, b):
        e.process(catalogue_events())
    a.process([Click(user="u", item="h0", type="click", ts=1.0, context={"device": "tv"})])
    for _, data in sa.outgoing():
        sb.receive(data)
    touched = [k for k in a.model.ranker.table.ids if not k.startswith("user=")]
    assert np.allclose(rows(a, touched), rows(b, touched), atol=1e-6)  # float32 changes
    assert "user=u" not in b.model.ranker.table.ids  # a user's own row stays with its worker
    assert b.popularity.counts() == a.popularity.counts()
    assert not b.users.history("u")  # and so does its history
    assert sb.applied == 1 and sa.sent == 1


def restarted(published: int, resumed: int) -> tuple[Engine, Sync]:
    """A worker that published its learning up to offset ``published`` of clicks[0], then
    restarted (a new run of the same sender that reads its own delta back) and resumed the
    partition at ``resumed``."""
    a = Engine(settings())
    first = Sync(a, "a")
    a.process(catalogue_events())
    a.process([Click(user="u", item="h0", type="click", ts=1.0)])
    sent = [m for _, m in first.outgoing({("clicks", 0): published})]
    again = Sync(a, "a")
    for data in sent:
        again.receive(data)
    assert again.applied == 0 and again.published == {("clicks", 0): published}
    again._at = {("clicks", 0): resumed}
    return a, again


def test_a_worker_never_applies_its_own_deltas_and_a_restart_does_not_send_them_twice():
    a, again = restarted(published=1, resumed=0)  # from a snapshot before its last click
    a.process([Click(user="u", item="h0", type="click", ts=1.0)])  # the same click again
    assert again.outgoing({("clicks", 0): 1}) == [] and again.dropped == 1  # sent before
    a.process([Click(user="u", item="h1", type="click", ts=2.0)])
    assert again.outgoing({("clicks", 0): 2})  # past what was published: sent


def test_a_restarted_worker_sends_what_it_learns_of_partitions_taken_over_past_its_own():
    """Killed, restarted, its partition meanwhile moved on under another worker: the events
    it learns now are new (it resumes where the other published), so they are shared."""
    a, again = restarted(published=5, resumed=9)
    a.process([Click(user="v", item="h1", type="click", ts=2.0)])
    assert again.outgoing({("clicks", 0): 10}) and again.dropped == 0


def test_two_synced_workers_hold_the_popularity_and_item_rows_of_one():
    events = stream(2000)
    (one,), _ = run(events, 1, every=100)
    (a, b), _ = run(events, 2, every=100)
    counts = {one.catalogue.item_of(i): c for i, c in one.popularity.counts().items()}
    for e in (a, b):  # every positive counted once in each worker
        assert {e.catalogue.item_of(i): c for i, c in e.popularity.counts().items()} == counts
    keys = [f"item=i{i}" for i in range(40)]
    apart = np.abs(rows(a, keys) - rows(b, keys)).max()
    assert apart < 0.1 * np.abs(rows(one, keys)).max()


def test_a_change_of_many_steps_is_sent_scaled_to_dense_steps_and_a_rare_one_whole():
    """Changes of rows stepped on every event, added up from workers a sync interval apart,
    overshoot (delayed gradients: MovieLens with 2 workers and changes sent whole diverged,
    ``python -m benchmarks.workers ... --unscaled``); each is sent as DENSE steps' worth."""
    a = Engine(settings(negatives=0))
    a.process(items())
    a.process([Click(user="x", item="i0", type="click", ts=0.0, context={"device": "tv"})])
    sa = Sync(a, "a")  # from here
    table = a.model.ranker.table
    before = table.weights.copy(), table.latents.copy()
    clicks = [
        Click(user=f"u{n}", item=f"i{n % 40}", type="click", ts=1.0, context={"device": "tv"})
        for n in range(80)
    ]
    a.process(clicks)
    change = {k: (table.weights[r] - before[0][r], table.latents[r] - before[1][r])
              for k, r in table.ids.items()}  # fmt: skip
    delta = sa.collect().tables["ranker"]
    sent = dict(zip(delta.keys, zip(delta.weights, delta.latents, strict=True), strict=True))
    often, rare = "device=tv", "item=i3"  # stepped 80 times; twice
    assert sync.DENSE < 80
    scale = sync.DENSE / 80
    assert np.allclose(sent[often][1], scale * change[often][1], rtol=1e-5, atol=1e-7)
    assert np.allclose(sent[rare][1], change[rare][1], rtol=1e-5, atol=1e-7)
    assert not np.allclose(change[often][1], 0.0)


def test_what_is_not_a_delta_is_refused_with_a_clear_error():
    s = Sync(Engine(settings()), "a")
    for junk in (b"", b"{}", b"PK\x03\x04 not a zip", np.zeros(3).tobytes()):
        with pytest.raises(ValueError, match="not a streamrec delta"):
            s.receive(junk)
    assert s.rejected == 4


def test_a_large_delta_travels_in_parts_that_add_up():
    a, b = Engine(settings()), Engine(settings())
    sa, sb = Sync(a, "a"), Sync(b, "b")
    events = stream(600, users=300)
    for e in (a, b):
        e.process(items())
    a.process(events)
    delta = sa.collect()
    parts = delta.parts(size=7)
    assert len(parts) > 2 and sum(len(p.positives) for p in parts) == len(delta.positives)
    for p in parts:
        sb.apply(Delta.decode(p.encode()))
    assert b.popularity.counts() == a.popularity.counts()
    keys = delta.tables["ranker"].keys
    assert set(keys) <= set(b.model.ranker.table.ids)  # every row, in one part or another


def test_a_snapshot_of_a_sharing_engine_resumes_with_its_shared_values(tmp_path):
    s = settings()
    a = Engine(s)
    sa = Sync(a, "a")
    a.process(catalogue_events())
    a.process([Click(user="u", item="h0", type="click", ts=1.0)])
    sa.outgoing()
    a.process([Click(user="u", item="h1", type="click", ts=2.0)])  # not shared yet
    snapshot.save(a, {}, tmp_path)
    back, _ = snapshot.load_latest(tmp_path, s)
    assert back.taps == []  # the live observers are not state
    keys, *_ = back.model.ranker.table.changes(skip="user=")
    again_keys, *_ = a.model.ranker.table.changes(skip="user=")
    assert keys == again_keys and keys  # what was not shared before is still to share


def test_what_could_not_be_sent_goes_with_the_next_collection():
    a, b = Engine(settings()), Engine(settings())
    sa, sb = Sync(a, "a"), Sync(b, "b")
    for e in (a, b):
        e.process(catalogue_events())
    a.process([Click(user="u", item="h0", type="click", ts=1.0)])
    lost = sa.outgoing()
    sa.unsent([delta for delta, _ in lost])  # the broker was not there
    a.process([Click(user="v", item="h1", type="click", ts=2.0)])
    for _, data in sa.outgoing():
        sb.receive(data)
    assert b.popularity.counts() == a.popularity.counts()  # both positives arrived
    touched = [k for k in a.model.ranker.table.ids if not k.startswith("user=")]
    assert np.allclose(rows(a, touched), rows(b, touched), atol=1e-6)
    assert sa.sent == 1


def pipeline(fake_redis, name):
    from streamer.pipeline import Pipeline
    from streamer.publisher import RedisSink

    async def dead(key, value):
        raise AssertionError("no dead letters here")

    s = settings(worker_id=name)
    return Pipeline(s, RedisSink(fake_redis, f"{name}:"), dead)


def test_a_partition_moves_with_its_users_state_and_resumes_where_it_was_published(fake_redis):
    """Worker a publishes its users' state (partition 0) with its deltas; worker b takes the
    partition over: it holds the users' history and rows, and resumes at a's offsets; a
    partition it published itself last resumes from its own state (not loaded again)."""
    from streamer.pipeline import Message

    a, b = pipeline(fake_redis, "a"), pipeline(fake_redis, "b")
    items = [Message("items", 0, n, b"", json.dumps({"item": f"i{n}"}).encode(), 1.0)
             for n in range(5)]  # fmt: skip
    for p in (a, b):
        asyncio.run(p.handle("items", items))
    clicks = [
        Message(a.settings.topic_clicks, 0, n, b"u", json.dumps(
            {"user": "u", "item": f"i{n % 5}", "type": "rating", "value": 5, "ts": n}
        ).encode(), 1.0)
        for n in range(7)
    ]  # fmt: skip
    asyncio.run(a.handle("clicks", clicks))
    users_topic: list[Message] = []
    deltas: list[bytes] = []

    async def send_delta(data):
        deltas.append(data)

    async def send_user(partition, key, value):
        users_topic.append(Message("users", partition, len(users_topic), key, value, 2.0))

    asyncio.run(a.sharing.publish(send_delta, send_user))
    assert [m.key for m in users_topic] == [b"u"] and deltas

    async def read(partitions):
        return [m for m in users_topic if m.partition in partitions]

    seeks = asyncio.run(b.sharing.take_over({0, 1}, read))
    assert seeks == {(b.settings.topic_clicks, 0): 7}
    engine = b.engine
    assert len(engine.users.history("u")) == 5 and engine.model.knows("user=u")
    assert b.sharing.handed_over == {
        0: {"users": 1, "from": "a", "offsets": {a.settings.topic_clicks: 7}}
    }
    assert asyncio.run(a.sharing.take_over({0}, read)) == {}  # a published it: its own state stands


def test_a_stopping_worker_takes_no_batch_after_its_hand_over(fake_redis):
    from streamer.pipeline import Message

    a = pipeline(fake_redis, "a")
    sent = []

    async def send_delta(data):
        sent.append(data)

    async def send_user(partition, key, value):
        sent.append(value)

    async def scenario():
        await a.sharing.hand_over(send_delta, send_user)
        late = Message(a.settings.topic_clicks, 0, 0, b"u", b'{"user": "u", "item": "x"}', 1.0)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(a.handle("clicks", [late]), 0.2)

    asyncio.run(scenario())
    assert a.engine.events == 0


def test_users_state_is_published_between_batches_never_before_a_batchs_dead_letters(fake_redis):
    """A batch whose dead letter is slow to send: a publication asked for meanwhile waits for
    the batch's end, so no published offsets pass an event whose dead letter is not out (a
    crash then resumes before it, and it is dead-lettered again)."""
    from streamer.pipeline import Message, Pipeline
    from streamer.publisher import RedisSink

    order: list[str] = []
    letter_sent = asyncio.Event()

    async def dead(key, value):
        order.append("dead letter")
        await letter_sent.wait()

    a = Pipeline(settings(worker_id="a"), RedisSink(fake_redis, "a:"), dead)
    topic = a.settings.topic_clicks
    clicks = [
        Message(topic, 0, 0, b"u", b'{"user": "u", "item": "i1", "ts": 1}', 1.0),
        Message(topic, 0, 1, b"u", b"not json", 1.0),
    ]
    published: list[dict] = []

    async def send_delta(data):
        order.append("deltas")

    async def send_user(partition, key, value):
        order.append("user")
        published.append(json.loads(value))

    async def scenario():
        batch = asyncio.create_task(a.handle("clicks", clicks))
        while "dead letter" not in order:
            await asyncio.sleep(0)
        publication = asyncio.create_task(a.sharing.publish(send_delta, send_user))
        await asyncio.sleep(0.05)
        assert order == ["dead letter"]  # the publication waits for the batch
        letter_sent.set()
        await asyncio.gather(batch, publication)

    asyncio.run(scenario())
    assert order == ["dead letter", "user", "deltas"]
    assert published[0]["offsets"] == {topic: 2}
