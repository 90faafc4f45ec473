"""MovieLens-100K as a stream: the catalogue first, then the ratings in time order.

GroupLens' terms forbid redistributing these files: streamrec reads them from a directory the
user has (default ``../shared/datasets/movielens-100k``) or downloads them from GroupLens.
"""

from __future__ import annotations

import hashlib
import io
import urllib.request
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from streamer.events import WEEKDAYS
from streamer.replay.record import LogRecord

URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
#: sha256 of the official files, as pinned by public projects.
SHA256 = {
    "u.data": "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490",
    "u.item": "553841ebc7de3a0fd0d6b62a204ea30c1e651aacfb2814c7a6584ac52f2c5701",
    "u.user": "f120e114da2e8cf314fd28f99417c94ae9ddf1cb6db8ce0e4b5995d40e90e62c",
}
GENRES = [
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
]


def is_movielens(path: Path) -> bool:
    return path.is_dir() and (path / "u.data").exists() and (path / "u.item").exists()


def verify(path: Path) -> None:
    """Raise ``ValueError`` unless the files match the official checksums."""
    for name, digest in SHA256.items():
        actual = hashlib.sha256((path / name).read_bytes()).hexdigest()
        if actual != digest:
            raise ValueError(f"{path / name}: sha256 {actual} is not the official {digest}")


def download(target: Path) -> Path:
    """Fetch ml-100k from GroupLens into ``target`` and verify it; returns the directory."""
    with urllib.request.urlopen(URL, timeout=60) as response:
        archive = zipfile.ZipFile(io.BytesIO(response.read()))
    target.mkdir(parents=True, exist_ok=True)
    for name in ("u.data", "u.item", "u.user", "README"):
        (target / name).write_bytes(archive.read(f"ml-100k/{name}"))
    verify(target)
    return target


def age_bucket(age: int) -> str:
    """MovieLens-1M's age groups.

    >>> [age_bucket(a) for a in (7, 18, 30, 61)]
    ['<18', '18-24', '25-34', '56+']
    """
    for limit, label in ((18, "<18"), (25, "18-24"), (35, "25-34"), (45, "35-44"), (50, "45-49")):
        if age < limit:
            return label
    return "50-55" if age < 56 else "56+"


def read_users(path: Path) -> dict[str, dict[str, str]]:
    profiles = {}
    for line in (path / "u.user").read_text(encoding="latin-1").splitlines():
        user, age, gender, occupation, _zip = line.split("|")
        profiles[user] = {
            "age": age_bucket(int(age)),
            "gender": gender,
            "occupation": occupation,
        }
    return profiles


def read_items(path: Path, ts: float) -> Iterator[LogRecord]:
    for line in (path / "u.item").read_text(encoding="latin-1").splitlines():
        fields = line.split("|")
        item, title, flags = fields[0], fields[1], fields[5:]
        tags = [genre for genre, flag in zip(GENRES, flags, strict=True) if flag == "1"]
        yield LogRecord("items", item, {"item": item, "title": title, "tags": tags, "ts": ts}, ts)


def read_ratings(path: Path) -> list[tuple[str, str, float, float]]:
    rows = []
    for line in (path / "u.data").read_text().splitlines():
        user, item, rating, ts = line.split("\t")
        rows.append((user, item, float(rating), float(ts)))
    rows.sort(key=lambda r: r[3])  # stable: ties keep file order
    return rows


def movielens(path: Path, profile: bool = True) -> Iterator[LogRecord]:
    """Items (title, genres) first, then ratings in time order with time and user context."""
    ratings = read_ratings(path)
    start = ratings[0][3] - 1.0 if ratings else 0.0
    yield from read_items(path, start)
    profiles = read_users(path) if profile else {}
    for user, item, rating, ts in ratings:
        moment = datetime.fromtimestamp(ts, tz=UTC)
        context = {"hour": str(moment.hour), "weekday": WEEKDAYS[moment.weekday()]}
        context.update(profiles.get(user, {}))
        value = {
            "user": user,
            "item": item,
            "type": "rating",
            "value": rating,
            "ts": ts,
            "event_id": f"ml100k-{user}-{item}",
            "context": context,
        }
        yield LogRecord("clicks", user, value, ts)
