"""A two-tower neural model, learned online in numpy: each side's features (user id, context,
last items; item id, tags, words) pooled by an embedding bag, then a residual MLP,
``z = h + W2 relu(W1 h + b1)``; the score is ``z_user . z_item``. Trained on micro-batches
of positives with an in-batch softmax (every other positive of the batch is a negative;
Covington et al. 2016, Yi et al. 2019), by Adagrad; the backward pass is written out and
checked against finite differences (``tests/unit/test_two_tower.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from streamer.rowpool import grown

Bag = Mapping[str, float]


class Tower:
    """One side: an embedding bag over named features, then a residual MLP.

    >>> tower = Tower(dim=4, hidden=8, seed=0)
    >>> tower.forward([{"a": 1.0}, {"a": 0.5, "b": 1.0}], grow=True).shape
    (2, 4)
    >>> tower.forget(["a"]).tolist(), sorted(tower.rows)  # a's row goes to the next new name
    ([0], ['b'])
    >>> _ = tower.forward([{"c": 1.0}], grow=True); tower.rows["c"], len(tower.embedding) >= 2
    (0, True)
    """

    #: Rows of forgotten names, reused by new ones (None: a tower from a snapshot written
    #: before names could be forgotten; none were, so it starts empty).
    free: list[int] | None = None

    def __init__(self, dim: int = 32, hidden: int = 64, seed: int = 0, scale: float = 0.1) -> None:
        rng = np.random.default_rng(seed)
        self.dim, self.hidden, self.scale = dim, hidden, scale
        self.rows: dict[str, int] = {}
        self.free = []
        self.embedding = np.zeros((0, dim))
        self.w1 = rng.normal(0.0, np.sqrt(2.0 / dim), (hidden, dim))
        self.b1 = np.zeros(hidden)
        self.w2 = np.zeros((dim, hidden))  # the MLP starts as the identity's residual: z = h
        self._rng = rng

    def _ids(self, bags: Sequence[Bag], grow: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per bag feature: its bag, its row (-1: unknown and not grown), its weight."""
        which, rows, weights = [], [], []
        free = self._free()
        reused = []
        for b, bag in enumerate(bags):
            for name, weight in bag.items():
                row = self.rows.get(name)
                if row is None and grow:
                    if free:
                        row = free.pop()
                        reused.append(row)
                    else:
                        row = len(self.rows) + len(free)
                    self.rows[name] = row
                if row is not None:
                    which.append(b)
                    rows.append(row)
                    weights.append(weight)
        if len(self.rows) + len(free) > len(self.embedding):  # new rows: initialised at random
            old = len(self.embedding)
            self.embedding = grown(self.embedding, max(2 * old, len(self.rows) + len(free), 64), 0)
            fresh = len(self.embedding) - old
            self.embedding[old:] = self._rng.normal(0.0, self.scale, (fresh, self.dim))
        if reused:  # a forgotten name's row, as a new one
            self.embedding[reused] = self._rng.normal(0.0, self.scale, (len(reused), self.dim))
        return np.array(which, np.int64), np.array(rows, np.int64), np.array(weights)

    def _free(self) -> list[int]:
        if self.free is None:
            self.free = []
        return self.free

    def forget(self, names: Iterable[str]) -> np.ndarray:
        """Drop ``names`` (unknown ones are ignored): their rows go to new names, drawn
        afresh. Returns the rows."""
        rows = [self.rows.pop(name) for name in names if name in self.rows]
        self._free().extend(rows)
        return np.array(rows, np.int64)

    def pooled(self, bags: Sequence[Bag], grow: bool = False) -> tuple[np.ndarray, tuple]:
        which, rows, weights = self._ids(bags, grow)
        h = np.zeros((len(bags), self.dim))
        np.add.at(h, which, weights[:, None] * self.embedding[rows])
        return h, (which, rows, weights)

    def forward(self, bags: Sequence[Bag], grow: bool = False) -> np.ndarray:
        h, _ = self.pooled(bags, grow)
        return self._mlp(h)[0]

    def _mlp(self, h: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pre = h @ self.w1.T + self.b1
        a = np.maximum(pre, 0.0)
        return h + a @ self.w2.T, a, pre

    def backward(
        self, dz: np.ndarray, h: np.ndarray, bag_ids: tuple
    ) -> dict[str, np.ndarray | tuple[np.ndarray, np.ndarray]]:
        """Gradients of the loss given ``dz`` (its gradient at the output) and the forward
        pass's pooled ``h``: the MLP's, and the embedding rows' (rows, gradients)."""
        _, a, pre = self._mlp(h)
        dw2 = dz.T @ a
        da = dz @ self.w2
        dpre = da * (pre > 0)
        dw1 = dpre.T @ h
        db1 = dpre.sum(axis=0)
        dh = dz + dpre @ self.w1
        which, rows, weights = bag_ids
        return {"w1": dw1, "b1": db1, "w2": dw2, "embedding": (rows, weights[:, None] * dh[which])}


class TwoTower:
    """Users' and items' towers and their online training.

    Examples
    --------
    >>> model = TwoTower(dim=8, hidden=16, lr=0.2, seed=1)
    >>> users = [{"user=a": 1.0}, {"user=b": 1.0}]
    >>> items = [{"item=x": 1.0}, {"item=y": 1.0}]
    >>> for _ in range(100):  # a likes x, b likes y
    ...     _ = model.step(users, items)
    >>> s = model.users.forward(users) @ model.items.forward(items).T
    >>> bool(s[0, 0] > s[0, 1] and s[1, 1] > s[1, 0])
    True
    """

    def __init__(self, dim: int = 32, hidden: int = 64, lr: float = 0.05, seed: int = 0) -> None:
        self.users = Tower(dim, hidden, seed)
        self.items = Tower(dim, hidden, seed + 1)
        self.lr = lr
        self._sums: dict[str, dict[str, np.ndarray]] = {}  # Adagrad's squared gradients

    def loss_and_grads(
        self, users: Sequence[Bag], items: Sequence[Bag], log_q: np.ndarray | None = None
    ) -> tuple[float, list[dict[str, np.ndarray | tuple[np.ndarray, np.ndarray]]]]:
        """The in-batch softmax loss of the positives ``(users[b], items[b])`` (each other
        item of the batch a negative), and each tower's gradients. ``log_q``: the log of each
        batch item's chance to be in a batch, subtracted from its logits (the sampling-bias
        correction of Yi et al. 2019: popular items are not pushed down for being frequent
        negatives); the scores served are not corrected."""
        hu, ids_u = self.users.pooled(users, grow=True)
        hi, ids_i = self.items.pooled(items, grow=True)
        zu, zi = self.users._mlp(hu)[0], self.items._mlp(hi)[0]
        logits = zu @ zi.T
        if log_q is not None:
            logits = logits - log_q[None, :]
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        n = len(users)
        loss = float(-np.log(p[np.arange(n), np.arange(n)] + 1e-12).mean())
        g = (p - np.eye(n)) / n  # d loss / d logits
        grads_u = self.users.backward(g @ zi, hu, ids_u)
        grads_i = self.items.backward(g.T @ zu, hi, ids_i)
        return loss, [grads_u, grads_i]

    def forget_users(self, names: Iterable[str]) -> None:
        """Drop the user tower's rows of ``names`` (an expired user's id) and their
        Adagrad sums: the rows go to new names as new rows."""
        rows = self.users.forget(names)
        rates = self._sums.get("users", {}).get("embedding")
        if rates is not None:
            rates[rows[rows < len(rates)]] = 0.0

    def step(
        self, users: Sequence[Bag], items: Sequence[Bag], log_q: np.ndarray | None = None
    ) -> float:
        """One Adagrad step on a micro-batch of positives (``log_q``: see
        :meth:`loss_and_grads`); returns its loss before the step."""
        if len(users) < 2:
            return float("nan")  # no negative in a batch of one
        loss, grads = self.loss_and_grads(users, items, log_q)
        for side, grad in zip(("users", "items"), grads, strict=True):
            tower: Tower = getattr(self, side)
            sums = self._sums.setdefault(side, {})
            for name in ("w1", "b1", "w2"):
                g = grad[name]
                assert isinstance(g, np.ndarray)
                acc = sums.setdefault(name, np.zeros_like(g))
                acc += g * g
                param = getattr(tower, name)
                param -= self.lr * g / (np.sqrt(acc) + 1e-8)
            rows, g_rows = grad["embedding"]
            assert isinstance(rows, np.ndarray) and isinstance(g_rows, np.ndarray)
            rates = sums.get("embedding", np.zeros(0))
            if len(rates) < len(tower.embedding):
                rates = sums["embedding"] = grown(rates, len(tower.embedding), 0)
            total = np.zeros((len(tower.embedding), tower.dim))
            np.add.at(total, rows, g_rows)
            touched = np.unique(rows)
            rates[touched] += (total[touched] ** 2).mean(axis=1)  # one rate per row
            tower.embedding[touched] -= (
                self.lr * total[touched] / (np.sqrt(rates[touched])[:, None] + 1e-8)
            )
        return loss
