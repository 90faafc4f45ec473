"""A learned state as JSON plus numpy arrays: what a snapshot holds, with no pickle in it.

:func:`encode` walks an object graph and returns a JSON-able document and the arrays it refers
to; :func:`decode` rebuilds the graph. Shared objects stay shared (each mutable object is
written once and referred to after), and only classes of this project's own packages, plus
the standard containers, numpy arrays and numpy's random generators, can be written or
read: a document naming anything else is refused (nothing is imported or called by name
beyond those classes, and their ``__init__`` is not run). Objects the caller rebuilds itself
(the settings, the FAISS index) are *externals*: written as a name, given back on decode.

Examples
--------
>>> from collections import OrderedDict
>>> shared = np.arange(3)
>>> state = {"a": shared, "b": [shared, OrderedDict([(2, "x")])], "c": {1: (1.5, None)}}
>>> doc, arrays = encode(state)
>>> back = decode(doc, arrays)
>>> back["b"][0] is back["a"], back["b"][1], back["c"]
(True, OrderedDict([(2, 'x')]), {1: (1.5, None)})
>>> decode({"$obj": "os:system", "id": 0, "state": {}}, {})
Traceback (most recent call last):
...
streamer.state_codec.StateError: class os:system is not one a snapshot may hold
"""

from __future__ import annotations

import collections
import importlib
import types
from collections.abc import Mapping
from typing import Any

import numpy as np

#: The packages whose classes a snapshot may hold: this project's, and River's (the model's
#: optimizers, losses and initializers are River objects).
PACKAGES = ("streamer.", "index.", "river.")
_FACTORIES: dict[str, Any] = {"float": float, "int": int, "list": list, "dict": dict, "set": set}
#: Arrays of at most this many elements are written into one pool per dtype (a slice each)
#: rather than as arrays of their own: a file member per array cost ~50 µs to write, and an
#: engine can hold a million small ones (the policy's last candidates of every user).
SMALL = 4096


class StateError(ValueError):
    """A state that cannot be written, or a document that must not be read."""


def encode(
    root: Any, externals: Mapping[str, Any] | None = None
) -> tuple[Any, dict[str, np.ndarray]]:
    """``root`` as (a JSON-able document, its arrays by name)."""
    return _Encoder({id(v): k for k, v in (externals or {}).items()}).run(root)


def decode(
    doc: Any, arrays: Mapping[str, np.ndarray], externals: Mapping[str, Any] | None = None
) -> Any:
    """The object graph of ``doc`` (from :func:`encode`), its arrays from ``arrays``."""
    return _Decoder(arrays, externals or {}).value(doc)


class _Encoder:
    def __init__(self, externals: dict[int, str]) -> None:
        self.externals = externals
        self.seen: dict[int, int] = {}
        self.keep: list[Any] = []  # what was seen stays alive: its id() is not reused
        self.arrays: dict[str, np.ndarray] = {}
        self.pools: dict[np.dtype[Any], tuple[str, list[np.ndarray], list[int]]] = {}

    def run(self, root: Any) -> tuple[Any, dict[str, np.ndarray]]:
        doc = self.value(root)
        for key, parts, _ in self.pools.values():
            self.arrays[key] = np.concatenate(parts)
        return doc, self.arrays

    def _array(self, x: np.ndarray, n: int) -> dict[str, Any]:
        """A large array as a file member of its own; a small one as a slice of its dtype's
        pool (``at``, ``shape``)."""
        if x.size > SMALL:
            key = f"a{len(self.arrays)}"
            self.arrays[key] = x
            return {"$array": key, "id": n}
        pool = self.pools.get(x.dtype)
        if pool is None:
            pool = self.pools[x.dtype] = (f"pool{len(self.pools)}", [], [0])
        key, parts, used = pool
        parts.append(x.ravel())
        at = used[0]
        used[0] += x.size
        return {"$array": key, "at": at, "shape": list(x.shape), "id": n}

    def value(self, x: Any) -> Any:
        if x is None or isinstance(x, bool | int | str):
            return x
        if isinstance(x, float):
            return float(x)
        name = self.externals.get(id(x))
        if name is not None:
            return {"$external": name}
        if isinstance(x, np.generic):
            return x.item()
        ref = self.seen.get(id(x))
        if ref is not None:
            return {"$ref": ref}
        n = self.seen[id(x)] = len(self.seen)
        self.keep.append(x)
        return self._new(x, n)

    def _new(self, x: Any, n: int) -> dict[str, Any]:
        kind = type(x)
        if kind is np.ndarray:
            if x.dtype == object:
                raise StateError("an array of Python objects cannot be snapshotted")
            return self._array(x, n)
        if isinstance(x, np.random.Generator):
            return {"$rng": type(x.bit_generator).__name__, "id": n,
                    "state": self.value(x.bit_generator.state)}  # fmt: skip
        if kind is np.random.RandomState:  # numpy's legacy generator (River's initializers)
            return {"$random_state": self.value(x.get_state()), "id": n}
        if kind in (list, tuple, set, frozenset, collections.deque):
            out: dict[str, Any] = {"$" + kind.__name__: [self.value(v) for v in x], "id": n}
            if kind is collections.deque:
                out["maxlen"] = x.maxlen
            return out
        if kind in (dict, collections.OrderedDict, collections.Counter, collections.defaultdict):
            out = {"$dict": kind.__name__, "id": n, "pairs": self._pairs(x)}
            if kind is collections.defaultdict:
                factory = getattr(x.default_factory, "__name__", "")
                if _FACTORIES.get(factory) is not x.default_factory:
                    raise StateError(
                        f"a defaultdict of {x.default_factory!r} cannot be snapshotted"
                    )
                out["factory"] = factory
            return out
        if isinstance(x, types.MethodType):
            return {"$method": x.__func__.__name__, "id": n, "self": self.value(x.__self__)}
        path = f"{kind.__module__}:{kind.__qualname__}"
        if not _allowed(kind):
            raise StateError(f"{path} cannot be snapshotted (not a class of this project)")
        if isinstance(x, tuple):  # a NamedTuple
            return {"$obj": path, "id": n, "items": [self.value(v) for v in x]}
        return {"$obj": path, "id": n, "state": self._pairs(_attributes(x))}

    def _pairs(self, mapping: Mapping[Any, Any]) -> list[list[Any]]:
        return [[self.value(k), self.value(v)] for k, v in mapping.items()]


class _Decoder:
    def __init__(self, arrays: Mapping[str, np.ndarray], externals: Mapping[str, Any]) -> None:
        self.arrays, self.externals = arrays, externals
        self.made: dict[int, Any] = {}

    def value(self, doc: Any) -> Any:
        if not isinstance(doc, dict):
            return doc
        if "$ref" in doc:
            return self.made[doc["$ref"]]
        if "$external" in doc:
            return self.externals[doc["$external"]]
        n: int = doc.get("id", -1)
        if "$array" in doc:
            stored = self.arrays[doc["$array"]]
            if "at" in doc:  # a slice of a pool
                shape = tuple(int(d) for d in doc["shape"])
                at, size = int(doc["at"]), int(np.prod(shape, dtype=np.int64))
                if not 0 <= at <= at + size <= len(stored):
                    raise StateError(f"a slice past the end of pool {doc['$array']!r}")
                return self._made(n, np.array(stored[at : at + size]).reshape(shape))
            return self._made(n, np.array(stored))
        if "$rng" in doc:
            bits = getattr(np.random, doc["$rng"], None)
            if bits is None or not issubclass(bits, np.random.BitGenerator):
                raise StateError(f"unknown random generator {doc['$rng']!r}")
            rng = self._made(n, np.random.Generator(bits()))
            rng.bit_generator.state = self.value(doc["state"])
            return rng
        if "$random_state" in doc:
            legacy = self._made(n, np.random.RandomState())
            legacy.set_state(self.value(doc["$random_state"]))
            return legacy
        if "$list" in doc:
            made_list: list[Any] = self._made(n, [])
            made_list.extend(self.value(v) for v in doc["$list"])
            return made_list
        if "$set" in doc:
            made_set: set[Any] = self._made(n, set())
            made_set.update(self.value(v) for v in doc["$set"])
            return made_set
        if "$deque" in doc:
            made_deque: collections.deque[Any] = self._made(
                n, collections.deque(maxlen=doc.get("maxlen"))
            )
            made_deque.extend(self.value(v) for v in doc["$deque"])
            return made_deque
        # immutable: made from their parts (never part of a cycle)
        if "$tuple" in doc:
            return self._made(n, tuple(self.value(v) for v in doc["$tuple"]))
        if "$frozenset" in doc:
            return self._made(n, frozenset(self.value(v) for v in doc["$frozenset"]))
        if "$dict" in doc:
            return self._dict(doc, n)
        if "$method" in doc:
            owner = self.value(doc["self"])
            return self._made(n, getattr(owner, doc["$method"]))
        if "$obj" in doc:
            return self._object(doc, n)
        raise StateError(f"unknown entry in a snapshot: {sorted(doc)[:3]}")

    def _made(self, n: int, x: Any) -> Any:
        self.made[n] = x
        return x

    def _dict(self, doc: dict[str, Any], n: int) -> Any:
        kinds = {
            "dict": dict,
            "OrderedDict": collections.OrderedDict,
            "Counter": collections.Counter,
        }
        if doc["$dict"] == "defaultdict":
            factory = _FACTORIES.get(doc.get("factory", ""))
            if factory is None:
                raise StateError(f"a defaultdict of {doc.get('factory')!r} cannot be read")
            made: Any = collections.defaultdict(factory)
        elif doc["$dict"] in kinds:
            made = kinds[doc["$dict"]]()
        else:
            raise StateError(f"unknown mapping {doc['$dict']!r}")
        self._made(n, made)
        for k, v in doc["pairs"]:
            made[self.value(k)] = self.value(v)
        return made

    def _object(self, doc: dict[str, Any], n: int) -> Any:
        path = doc["$obj"]
        module, _, qualname = path.partition(":")
        if not module.startswith(PACKAGES) and module not in {p.rstrip(".") for p in PACKAGES}:
            raise StateError(f"class {path} is not one a snapshot may hold")
        kind: Any = importlib.import_module(module)
        for part in qualname.split("."):
            kind = getattr(kind, part)
        if not isinstance(kind, type) or not _allowed(kind):
            raise StateError(f"class {path} is not one a snapshot may hold")
        if "items" in doc:
            return self._made(n, kind(*(self.value(v) for v in doc["items"])))
        made = self._made(n, object.__new__(kind))
        for k, v in doc["state"]:
            object.__setattr__(made, k, self.value(v))
        return made


def _allowed(kind: type) -> bool:
    return kind.__module__.startswith(PACKAGES)


def _attributes(x: Any) -> dict[str, Any]:
    """An object's attributes: its ``__dict__`` and its slots."""
    out = dict(getattr(x, "__dict__", {}))
    for klass in type(x).__mro__:
        for slot in getattr(klass, "__slots__", ()):
            if slot not in ("__dict__", "__weakref__") and hasattr(x, slot):
                out[slot] = getattr(x, slot)
    return out
