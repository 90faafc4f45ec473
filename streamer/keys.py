"""Redis key names, shared by the worker (writes) and the read helper (reads).

Standard library only: clients import this without the worker's dependencies.

>>> rec_key("streamrec:", "42"), pop_key("streamrec:"), pop_key("streamrec:", "device=tv")
('streamrec:rec:42', 'streamrec:pop', 'streamrec:pop:device=tv')
>>> sim_key("streamrec:", "7")
'streamrec:sim:7'
"""

from __future__ import annotations


def rec_key(prefix: str, user: str) -> str:
    """A user's list."""
    return f"{prefix}rec:{user}"


def pop_key(prefix: str, context_key: str = "") -> str:
    """The popular list of a context bucket ('' for everyone's)."""
    return f"{prefix}pop:{context_key}" if context_key else f"{prefix}pop"


def sim_key(prefix: str, item: str) -> str:
    """An item's similar items."""
    return f"{prefix}sim:{item}"
