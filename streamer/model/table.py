"""A factorization machine's parameters as two numpy arrays, one row per feature.

River keeps an FM's weights and latent vectors in two dicts of Python floats and small arrays;
here they live in a growable ``(n,)`` weight vector and ``(n, k)`` latent matrix, so a learning
step gathers and scatters rows by integer index, vectors for a whole catalogue are one gather,
and a feature costs ``8 (k + 1)`` bytes instead of a dict entry and a numpy object.
:class:`WeightView` and :class:`LatentView` show the table as River's two dicts, so River's own
``learn_one`` / ``predict_one`` code runs on it unchanged.

Examples
--------
>>> from river import optim
>>> t = ParameterTable(3, optim.initializers.Zeros(), optim.initializers.Normal(sigma=0.1, seed=0))
>>> t.rows(["user=a", "item=b", "user=a"]).tolist()
[0, 1, 0]
>>> t.latents[:2].shape, t.learned[:2].tolist()
((2, 3), [False, False])
>>> t.find(["item=b", "item=z"]).tolist()
[1, -1]
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator, MutableMapping, Sequence
from typing import Any

import numpy as np

from streamer.rowpool import grown


class ParameterTable:
    """Rows created on first sight, initialised by River's initializers in order of creation.

    ``learned[row]`` says whether the row took part in a learning step since it was created
    (or reset): vectors built for the index ignore rows that never did.

    With ``keyed`` (a seed), a row's first latents are drawn from the latent initializer's
    normal distribution by a generator seeded with the seed and the key, not in order of
    creation: tables that create the same key in different orders (several workers) start it
    alike. :meth:`track` keeps the parameters as last shared, so that :meth:`changes` returns
    what was learned here since, and :meth:`add` adds what was learned elsewhere.
    """

    def __init__(
        self,
        n_factors: int,
        weight_init: Any,
        latent_init: Any,
        capacity: int = 1024,
        keyed: int | None = None,
    ) -> None:
        self.n_factors = n_factors
        self.weight_init, self.latent_init = weight_init, latent_init
        self.keyed = keyed
        self.ids: dict[str, int] = {}
        self.keys: list[str] = []  # the key of each row ever made ("" once forgotten)
        self.free: list[int] = []  # rows of forgotten keys, reused first
        self.weights = np.zeros(capacity)
        self.latents = np.zeros((capacity, n_factors))
        self.learned = np.zeros(capacity, bool)
        # the parameters as last shared (track()); None: not tracked
        self.shared: tuple[np.ndarray, np.ndarray] | None = None
        self.touches = np.zeros(0, np.int64)  # learning steps per row since (tracked)

    def __len__(self) -> int:
        return len(self.ids)

    def row(self, key: str) -> int:
        """The row of ``key``, created if new."""
        row = self.ids.get(key)
        return self._add(key) if row is None else row

    def rows(self, keys: Iterable[str]) -> np.ndarray:
        """The rows of ``keys`` (created if new), as an int64 array."""
        out: list[int] = []
        self.extend_rows(keys, out)
        return np.array(out, np.int64)

    def extend_rows(self, keys: Iterable[str], out: list[int]) -> None:
        """Append the rows of ``keys`` (created if new) to ``out``."""
        get, add = self.ids.get, self._add
        out.extend([row if (row := get(k)) is not None else add(k) for k in keys])

    def find(self, keys: Sequence[str]) -> np.ndarray:
        """The rows of ``keys``, -1 for keys never seen (creates nothing)."""
        get = self.ids.get
        return np.fromiter((get(k, -1) for k in keys), np.int64, len(keys))

    def reset(self, rows: np.ndarray) -> None:
        """Re-initialise ``rows`` as if their features were new (used after a divergence)."""
        for row in np.unique(rows).tolist():
            self._init_row(row)

    def forget(self, keys: Iterable[str]) -> int:
        """Drop ``keys`` (unknown ones are ignored); their rows are reused, re-initialised, by
        the next new keys. Returns how many were dropped."""
        dropped = 0
        for key in keys:
            row = self.ids.pop(key, None)
            if row is not None:
                self.free.append(row)
                self.keys[row] = ""
                self.learned[row] = False
                dropped += 1
        return dropped

    # -- sharing (several workers) ----------------------------------------------------------

    def track(self) -> None:
        """Keep the parameters as they are now as the last shared ones, and count the
        learning steps of each row (:meth:`touch`) from now."""
        self.shared = self.weights.copy(), self.latents.copy()
        self.touches = np.zeros(len(self.weights), np.int64)

    def touch(self, *rows: np.ndarray) -> None:
        """Count a learning step of each of ``rows`` (repeats count again)."""
        for r in rows:
            np.add.at(self.touches, r, 1)

    def changes(
        self, skip: str = ""
    ) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(keys, rows, weight changes, latent changes, steps)`` of the rows learned here
        since the last call (or :meth:`track`), keys starting with ``skip`` left out (their
        changes stay here); they are shared now, and every row's steps count from 0 again.

        >>> from river import optim
        >>> t = ParameterTable(2, optim.initializers.Zeros(), optim.initializers.Zeros())
        >>> t.track()
        >>> t.weights[t.rows(["item=a", "user=u", "tag=x"])] += [1.0, 2.0, 0.0]
        >>> keys, rows, dw, dv, steps = t.changes(skip="user=")
        >>> keys, dw.tolist()
        (['item=a'], [1.0])
        >>> t.changes()[0]  # shared now: nothing new but what was skipped
        ['user=u']
        """
        if self.shared is None:
            raise ValueError("changes() of a table that is not tracked (track() first)")
        n = len(self.keys)
        base_w, base_v = self.shared
        dw = self.weights[:n] - base_w[:n]
        dv = self.latents[:n] - base_v[:n]
        rows = np.flatnonzero((dw != 0.0) | (dv != 0.0).any(axis=1))
        keys = self.keys
        if skip:
            rows = rows[[not keys[r].startswith(skip) for r in rows.tolist()]]
        rows = rows[[bool(keys[r]) for r in rows.tolist()]]
        base_w[rows] = self.weights[rows]
        base_v[rows] = self.latents[rows]
        steps = self.touches[rows]
        self.touches[:] = 0
        return [keys[r] for r in rows.tolist()], rows, dw[rows], dv[rows], steps

    def unshare(self, rows: np.ndarray, dw: np.ndarray, dv: np.ndarray) -> None:
        """Take back part of what :meth:`changes` returned (not sent after all): the next
        :meth:`changes` returns it again."""
        if self.shared is not None:
            self.shared[0][rows] -= dw
            self.shared[1][rows] -= dv

    def add(self, keys: Sequence[str], dw: np.ndarray, dv: np.ndarray) -> np.ndarray:
        """Add changes learned elsewhere (``keys`` distinct; new keys are made, keyed); they
        are shared already, so :meth:`changes` does not return them. Returns the rows."""
        rows = self.rows(keys)
        self.weights[rows] += dw
        self.latents[rows] += dv
        self.learned[rows] = True
        if self.shared is not None:
            self.shared[0][rows] += dw
            self.shared[1][rows] += dv
        return rows

    # -- rows -------------------------------------------------------------------------------

    def _add(self, key: str) -> int:
        if self.free:
            row = self.free.pop()
            self.keys[row] = key
        else:
            row = len(self.keys)
            if row == len(self.weights):
                self._grow(2 * row)
            self.keys.append(key)
        self.ids[key] = row
        self._init_row(row)
        return row

    def _init_row(self, row: int) -> None:
        self.weights[row] = self.weight_init()
        if self.keyed is None:
            self.latents[row] = self.latent_init(shape=self.n_factors)
        else:
            key = zlib.crc32(self.keys[row].encode("utf-8", "surrogatepass"))
            draw = np.random.default_rng([self.keyed, key])
            init = self.latent_init
            self.latents[row] = draw.normal(init.mu, init.sigma, self.n_factors)
        self.learned[row] = False
        if self.shared is not None:  # a new row is nobody's change
            self.shared[0][row] = self.weights[row]
            self.shared[1][row] = self.latents[row]
            self.touches[row] = 0

    def _grow(self, capacity: int) -> None:
        self.weights = grown(self.weights, capacity, 0)
        self.latents = grown(self.latents, capacity, 0)
        self.learned = grown(self.learned, capacity, 0)
        if self.shared is not None:
            self.shared = grown(self.shared[0], capacity, 0), grown(self.shared[1], capacity, 0)
            self.touches = grown(self.touches, capacity, 0)


class _View:
    def __init__(self, table: ParameterTable) -> None:
        self.table = table

    def __contains__(self, key: object) -> bool:
        return key in self.table.ids

    def __iter__(self) -> Iterator[str]:
        return iter(self.table.ids)

    def __len__(self) -> int:
        return len(self.table)

    def __delitem__(self, key: str) -> None:
        """Forget ``key``'s parameters: its row is re-initialised."""
        self.table.reset(np.array([self.table.ids[key]]))


class WeightView(_View, MutableMapping[str, float]):
    """The table's weights as River's ``weights`` dict (missing keys are created)."""

    def __getitem__(self, key: str) -> float:
        return float(self.table.weights[self.table.row(key)])

    def __setitem__(self, key: str, value: float) -> None:
        row = self.table.row(key)
        self.table.weights[row] = value
        self.table.learned[row] = True


class LatentView(_View, MutableMapping[str, np.ndarray]):
    """The table's latent vectors as River's ``latents`` dict (copies; missing keys created)."""

    def __getitem__(self, key: str) -> np.ndarray:
        return self.table.latents[self.table.row(key)].copy()

    def __setitem__(self, key: str, value: np.ndarray) -> None:
        row = self.table.row(key)
        self.table.latents[row] = value
        self.table.learned[row] = True
