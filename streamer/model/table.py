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

from collections.abc import Iterable, Iterator, MutableMapping, Sequence
from typing import Any

import numpy as np


class ParameterTable:
    """Rows created on first sight, initialised by River's initializers in order of creation.

    ``learned[row]`` says whether the row took part in a learning step since it was created
    (or reset): vectors built for the index ignore rows that never did.
    """

    def __init__(
        self, n_factors: int, weight_init: Any, latent_init: Any, capacity: int = 1024
    ) -> None:
        self.n_factors = n_factors
        self.weight_init, self.latent_init = weight_init, latent_init
        self.ids: dict[str, int] = {}
        self.free: list[int] = []  # rows of forgotten keys, reused first
        self.weights = np.zeros(capacity)
        self.latents = np.zeros((capacity, n_factors))
        self.learned = np.zeros(capacity, bool)

    def __len__(self) -> int:
        return len(self.ids)

    def row(self, key: str) -> int:
        """The row of ``key``, created if new."""
        row = self.ids.get(key)
        return self._add(key) if row is None else row

    def rows(self, keys: Iterable[str]) -> np.ndarray:
        """The rows of ``keys`` (created if new), as an int64 array."""
        ids, add = self.ids, self._add
        return np.array([ids[k] if k in ids else add(k) for k in keys], np.int64)

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
                self.learned[row] = False
                dropped += 1
        return dropped

    def _add(self, key: str) -> int:
        if self.free:
            row = self.free.pop()
        else:
            row = len(self.ids)
            if row == len(self.weights):
                self._grow(2 * row)
        self.ids[key] = row
        self._init_row(row)
        return row

    def _init_row(self, row: int) -> None:
        self.weights[row] = self.weight_init()
        self.latents[row] = self.latent_init(shape=self.n_factors)
        self.learned[row] = False

    def _grow(self, capacity: int) -> None:
        n = len(self.weights)
        self.weights = np.resize(self.weights, capacity)
        latents = np.zeros((capacity, self.n_factors))
        latents[:n] = self.latents
        self.latents = latents
        self.learned = np.resize(self.learned, capacity)
        self.learned[n:] = False


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
