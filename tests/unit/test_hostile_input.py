"""Whatever the bytes: every decoder returns a valid event or raises InvalidEvent, and what it
returns can be encoded as a Redis key, a feature name and JSON (property-based, hypothesis)."""

import asyncio
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.events import InvalidEvent, Validator
from streamer.pipeline import Message, Pipeline, dead_letter
from streamer.publisher import RedisSink
from streamer.recommender import RecList
from streamer.settings import Settings

V = Validator(Settings())
DECODERS = (V.click, V.context, V.item)

# JSON-ish values with the poison classes: huge integers, overflowing literals, lone surrogates
POISON_INTS = st.sampled_from([10**400, -(10**400), 10**19, 2**63])  # 4,300+ digits: below
SURROGATES = st.sampled_from(["\ud800", "a\udfffb", "\udc80"])
TEXT = st.one_of(st.text(max_size=20), SURROGATES)
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), POISON_INTS, st.floats(allow_nan=True), TEXT
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)),
    max_leaves=12,
)
FIELDS = st.sampled_from(
    [
        "user",
        "item",
        "type",
        "value",
        "ts",
        "context",
        "tags",
        "title",
        "text",
        "event_id",
        "rec_id",
        "topic",
    ]
)
EVENTS = st.dictionaries(FIELDS, VALUES, max_size=8)


def _decodes_or_is_invalid(raw):
    """Every decoder returns an event whose fields encode as UTF-8 JSON, or InvalidEvent."""
    for decode in DECODERS:
        try:
            event = decode(raw)
        except InvalidEvent:
            continue
        for value in event.asdict().values():
            json.dumps(value, ensure_ascii=False, default=str).encode("utf-8")  # no surrogate


def _raw(value):
    """JSON text of ``value``, huge integers and lone surrogates kept as a hostile client
    would write them."""
    return json.dumps(value, ensure_ascii=True, default=str).encode()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_decode_or_are_invalid(raw):
    _decodes_or_is_invalid(raw)


@settings(max_examples=500, deadline=None)
@given(EVENTS)
def test_any_json_object_decodes_to_an_encodable_event_or_is_invalid(value):
    _decodes_or_is_invalid(_raw(value))


def test_the_poison_classes_are_invalid_with_a_reason():
    huge = b'{"user": "u", "item": "i", "value": ' + b"9" * 5000 + b', "type": "rating"}'
    cases = {
        huge: "not JSON",
        b'{"user": "u", "item": "i", "type": "rating", "value": 1' + b"0" * 400 + b"}": "range",
        b'{"user": "u", "item": "i", "ts": 1' + b"0" * 400 + b"}": "'ts' is out of range",
        b'{"user": "\\ud800", "item": "i"}': "lone surrogate",
        b'{"user": "u", "item": "i", "context": {"device": "\\ud800"}}': "lone surrogate",
        b'{"user": "u", "item": "i", "context": {"\\udc80": "tv"}}': "lone surrogate",
        b'{"user": 10000000000000000000000, "item": "i"}': "more than 18 digits",
    }
    for raw, reason in cases.items():
        try:
            V.click(raw)
        except InvalidEvent as exc:
            assert reason in str(exc), (raw[:60], str(exc))
        else:
            raise AssertionError(f"accepted {raw[:60]!r}")


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=30), st.lists(st.text(min_size=1, max_size=10), max_size=5))
def test_lists_of_valid_ids_encode_as_keys_and_json(user, items):
    raw = json.dumps({"user": user, "item": "i"}).encode()
    try:
        user = V.click(raw).user
    except InvalidEvent:
        return
    rec = RecList(user, [(i, 0.5) for i in items], {}, 1, 0.0, "model")
    json.dumps(rec.to_json(1.0), ensure_ascii=False).encode("utf-8")
    f"streamrec:rec:{user}".encode()


def test_a_dead_letter_of_a_huge_message_stays_small_and_keeps_its_reason():
    message = Message("clicks", 0, 7, b"k", b"x" * 3_000_000, 0.0)
    letter = json.loads(dead_letter(message, "not JSON"))
    assert letter["raw_size"] == 3_000_000 and letter["reason"] == "not JSON"
    assert len(dead_letter(message, "not JSON")) < 100_000


def test_a_batch_full_of_poison_loses_no_good_event(fake_redis):
    dead = []

    async def send(key, value):
        dead.append(json.loads(value))

    pipeline = Pipeline(Settings(n_factors=4, top_k=3), RedisSink(fake_redis, "t:"), send)
    poison = [
        b'{"user": "u", "item": "i", "value": ' + b"9" * 5000 + b', "type": "rating"}',
        b'{"user": "\\ud800", "item": "i"}',
        b'{"user": "u", "item": "i", "context": {"device": "\\ud800"}}',
        b'{"user": "u", "item": "i", "ts": 1' + b"0" * 400 + b"}",
        b"\xff" * 1_000_000,
    ]
    good = [json.dumps({"user": f"g{n}", "item": f"i{n % 3}"}).encode() for n in range(20)]
    batch = [Message("clicks", 0, n, b"k", raw, 1.0) for n, raw in enumerate([*poison, *good])]
    asyncio.run(pipeline.handle("clicks", batch))
    assert len(dead) == len(poison)
    assert pipeline.engine.events == len(good)
    assert all(f"t:rec:g{n}" in fake_redis.data for n in range(20))


def _read(read, raw):
    try:
        return read(raw)
    except Exception as exc:  # what each says of bytes it cannot read
        return type(exc).__name__


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=60).map(lambda tail: b"{" + tail),  # the validator's own path
        st.tuples(EVENTS, st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-16-le",
                                           "utf-32", "utf-32-be"])).map(
            lambda pair: json.dumps(pair[0], ensure_ascii=False, default=str).encode(
                pair[1], "surrogatepass"
            )
        ),
    )
)  # fmt: skip
def test_a_message_reads_as_json_loads_reads_it(raw):
    """The validator reads a message that opens with ``{`` as UTF-8 itself, skipping
    ``json.loads``' guess of the encoding: the same object, or a refusal where it fails."""

    def loads(raw):
        d = json.loads(raw)
        if not isinstance(d, dict):
            raise InvalidEvent("not an object")
        return d

    ours, theirs = _read(V._object, raw), _read(loads, raw)
    if isinstance(theirs, str):  # json.loads refused it: so does the validator, with a reason
        assert ours == "InvalidEvent", (ours, theirs)
    else:  # (repr: a NaN equals no other NaN)
        assert repr(ours) == repr(theirs)
