import json

import pytest

from streamer.events import InvalidEvent, Validator
from streamer.settings import Settings

V = Validator(Settings())


def click(**fields):
    base = {"user": "u1", "item": "i1", "type": "click", "ts": 1.0}
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not ...}).encode()


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (click(user=...), "missing 'user'"),
        (click(item=None), "missing 'item'"),
        (click(user=""), "empty 'user'"),
        (click(user=["a"]), "'user' must be a string or an integer"),
        (click(user=True), "'user' must be a string or an integer"),
        (click(user="x" * 300), "longer than 256"),
        (click(type="like"), "unknown event type 'like'"),
        (click(type="rating"), "rating without a value"),
        (click(type="rating", value=7), "out of the rating range"),
        (click(type="rating", value="5"), "'value' must be a number"),
        (b'{"user":"u","item":"i","type":"rating","value":NaN}', "'value' is not finite"),
        (b'{"user":"u","item":"i","ts":Infinity}', "'ts' is not finite"),
        (click(ts=1.7e12), "not unix seconds"),
        (click(context="tv"), "'context' must be an object"),
        (click(context={f"k{i}": "v" for i in range(17)}), "at most 16"),
        (click(context={"device": {"nested": 1}}), "must be a string or a number"),
        (click(context={"device": "x" * 300}), "too long"),
        (click(event_id=5), "'event_id' must be a string"),
    ],
)
def test_click_rejections_say_why(raw, reason):
    with pytest.raises(InvalidEvent, match=reason):
        V.click(raw)


def test_valid_click_is_typed_and_context_enriched():
    event = V.click(click(type="purchase", context={"device": "tv", "hour": 22}, ts=...))
    assert (event.user, event.item, event.type, event.value) == ("u1", "i1", "purchase", None)
    assert event.context["device"] == "tv"
    assert event.context["hour"] == "22" and event.context["daypart"] == "evening"
    assert event.ts > 1e9  # defaulted to now


def test_integer_ids_become_strings():
    event = V.click(b'{"user": 42, "item": 7, "type": "rating", "value": 3.5}')
    assert (event.user, event.item, event.value) == ("42", "7", 3.5)


def test_contexts_and_items():
    ctx = V.context(b'{"user": "u", "context": {"location": "home"}}')
    assert ctx.context["location"] == "home"
    with pytest.raises(InvalidEvent, match="missing 'context'"):
        V.context(b'{"user": "u"}')
    item = V.item(b'{"item": "i", "title": "Alien", "tags": ["Sci-Fi"], "text": "space"}')
    assert (item.item, item.tags, item.text) == ("i", ["Sci-Fi"], "space")
    with pytest.raises(InvalidEvent, match="'tags' must be a list"):
        V.item(b'{"item": "i", "tags": "Sci-Fi"}')
    with pytest.raises(InvalidEvent, match="'tag' must be a string"):
        V.item(b'{"item": "i", "tags": [1]}')
    with pytest.raises(InvalidEvent, match="33 tags"):
        V.item(json.dumps({"item": "i", "tags": ["t"] * 33}).encode())
