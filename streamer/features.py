"""Feature dicts for the factorization machine, split into a user+context side and an item side.

Each side's values depend only on that side (ids valued 1, metadata by a weight fixed per item),
which is what lets the model's ranking be read as an inner product (see :mod:`streamer.model`).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Mapping, Sequence

Features = dict[str, float]
#: The item id feature's prefix: an item side's first feature is ``item=<id>``.
ITEM_PREFIX = "item="
#: The user id feature's prefix: a query side's first feature, when it has one (``user_feature``).
USER_PREFIX = "user="

#: Context keys that describe the moment rather than the user's taste stay out of the model
#: only when listed here; everything else in the context is a feature.
IGNORED_CONTEXT_KEYS = frozenset({"daypart"})
_WORD = re.compile(r"[a-z0-9]+")
_STOPWORDS = frozenset(
    [
        "the",
        "a",
        "an",
        "and",
        "of",
        "in",
        "on",
        "to",
        "for",
        "with",
        "from",
        "at",
        "by",
        "is",
        "it",
        "la",
        "le",
        "el",
        "de",
    ]
)


def user_features(
    user: str, context: Mapping[str, str], previous: Sequence[str] = (), with_id: bool = True
) -> Features:
    """The query side: the user id (unless not ``with_id``: a user too new to have one) and
    each context value, all valued 1, and the user's ``previous`` items (the most recent last)
    as ``prev=`` features weighted by recency (halving with each step back, one unit in all):
    "what follows what" (Rendle's FPMC).

    >>> user_features("42", {"device": "tv", "hour": "21", "daypart": "evening"})
    {'user=42': 1.0, 'device=tv': 1.0, 'hour=21': 1.0}
    >>> {k: round(v, 3) for k, v in user_features("42", {}, ["7", "9"]).items()}
    {'user=42': 1.0, 'prev=9': 0.894, 'prev=7': 0.447}
    >>> user_features("42", {"device": "tv"}, with_id=False)
    {'device=tv': 1.0}
    """
    x = {user_feature(user): 1.0} if with_id else {}
    for key, value in context.items():
        if key not in IGNORED_CONTEXT_KEYS:
            x[f"{key}={value}"] = 1.0
    if previous:
        for item, weight in zip(reversed(previous), _recency(len(previous)), strict=True):
            key = sequence_feature(item)
            x[key] = x.get(key, 0.0) + weight
    return x


def user_feature(user: str) -> str:
    """The feature of ``user``'s id (their own rows in the models: what expiry frees and what
    stays with the user's worker).

    >>> user_feature("42")
    'user=42'
    """
    return f"{USER_PREFIX}{user}"


def sequence_feature(item: str) -> str:
    """The query-side feature of ``item`` among a user's previous items.

    >>> sequence_feature("m7")
    'prev=m7'
    """
    return f"prev={item}"


@functools.cache
def _recency(n: int) -> tuple[float, ...]:
    """``n`` weights halving with each step back, of unit norm."""
    weights = [0.5**age for age in range(n)]
    norm = math.sqrt(sum(w * w for w in weights))
    return tuple(w / norm for w in weights)


def item_features(
    item: str, tags: Iterable[str] = (), text: str = "", max_words: int = 8
) -> Features:
    """The item side: the item id, its tags and the words of its text (content features).

    Tags share a unit of weight (1/sqrt(n) each), words half a unit, so a heavily tagged
    item does not outweigh its own id.

    >>> x = item_features("1", ["Animation", "Comedy"], "Toy Story (1995)")
    >>> {k: round(v, 3) for k, v in x.items()}
    {'item=1': 1.0, 'tag=animation': 0.707, 'tag=comedy': 0.707, 'word=toy': 0.289, \
'word=story': 0.289, 'word=1995': 0.289}
    """
    x = {f"{ITEM_PREFIX}{item}": 1.0}
    tag_names = sorted({t.strip().lower() for t in tags if t.strip()})
    for tag in tag_names:
        x[f"tag={tag}"] = 1.0 / math.sqrt(len(tag_names))
    words = list(dict.fromkeys(content_words(text)))[:max_words]
    for word in words:
        x[f"word={word}"] = 0.5 / math.sqrt(len(words))
    return x


def own_features(item_x: Features) -> list[str]:
    """The features of an item that no other item shares: its id (the first of its side) and
    its place among users' previous items (:func:`sequence_feature`): what expiry frees.

    >>> own_features(item_features("m7", ["Drama"]))
    ['item=m7', 'prev=m7']
    """
    key = next(iter(item_x))
    return [key, sequence_feature(key.removeprefix(ITEM_PREFIX))]


def content_words(text: str) -> list[str]:
    """Lower-case words of two or more letters, without stop words.

    >>> content_words("The Good, the Bad and the Ugly (1966)")
    ['good', 'bad', 'ugly', '1966']
    """
    return [w for w in _WORD.findall(text.lower()) if len(w) > 1 and w not in _STOPWORDS]
