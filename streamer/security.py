"""Credentials from the settings: Kafka (SASL and TLS) for Faust and kafka-python, Redis (ACL
user and password, TLS) for redis-py. One place, so every client of the worker, the replay
and the helpers connects the same way.

Examples
--------
>>> from streamer.settings import Settings
>>> kafka_options(Settings())
{'security_protocol': 'PLAINTEXT'}
>>> s = Settings(kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="SCRAM-SHA-512",
...              kafka_username="svc", kafka_password="secret", kafka_ca_file="/etc/ca.pem")
>>> sorted(kafka_options(s).items())  # doctest: +NORMALIZE_WHITESPACE
[('sasl_mechanism', 'SCRAM-SHA-512'), ('sasl_plain_password', 'secret'),
 ('sasl_plain_username', 'svc'), ('security_protocol', 'SASL_SSL'), ('ssl_cafile', '/etc/ca.pem')]
>>> "secret" in repr(s)  # never in a log line
False
>>> kafka_options(Settings(kafka_security_protocol="SASL_PLAINTEXT"))  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
ValueError: STREAMREC_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT needs STREAMREC_KAFKA_USERNAME ...
"""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import urlparse

from streamer.settings import Settings

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def kafka_options(settings: Settings) -> dict[str, Any]:
    """kafka-python's keyword arguments for the broker's security (not its address)."""
    protocol, mechanism = settings.kafka_security_protocol, settings.kafka_sasl_mechanism
    if protocol not in PROTOCOLS:
        raise ValueError(
            f"STREAMREC_KAFKA_SECURITY_PROTOCOL={protocol}: expected one of {PROTOCOLS}"
        )
    options: dict[str, Any] = {"security_protocol": protocol}
    if protocol.startswith("SASL"):
        if mechanism not in MECHANISMS:
            raise ValueError(
                f"STREAMREC_KAFKA_SASL_MECHANISM={mechanism}: expected one of {MECHANISMS}"
            )
        if not settings.kafka_username or not settings.kafka_password:
            raise ValueError(
                f"STREAMREC_KAFKA_SECURITY_PROTOCOL={protocol} needs STREAMREC_KAFKA_USERNAME "
                "and STREAMREC_KAFKA_PASSWORD"
            )
        options.update(
            sasl_mechanism=mechanism,
            sasl_plain_username=settings.kafka_username,
            sasl_plain_password=settings.kafka_password,
        )
    if protocol.endswith("SSL") and settings.kafka_ca_file:
        options["ssl_cafile"] = settings.kafka_ca_file
    return options


def aiokafka_options(settings: Settings) -> dict[str, Any]:
    """aiokafka's keyword arguments for the broker's security (an SSL context, not a file).

    >>> sorted(aiokafka_options(Settings()))
    ['security_protocol']
    """
    options = kafka_options(settings)
    cafile = options.pop("ssl_cafile", None)
    if options["security_protocol"].endswith("SSL"):
        options["ssl_context"] = ssl.create_default_context(cafile=cafile)
    return options


def faust_credentials(settings: Settings) -> Any:
    """Faust's ``broker_credentials`` for the settings (None for PLAINTEXT)."""
    import faust

    options = kafka_options(settings)  # validates
    protocol = options["security_protocol"]
    if protocol == "PLAINTEXT":
        return None
    context = None
    if protocol.endswith("SSL"):
        context = ssl.create_default_context(cafile=settings.kafka_ca_file or None)
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    return faust.SASLCredentials(
        username=settings.kafka_username,
        password=settings.kafka_password,
        ssl_context=context,
        mechanism=settings.kafka_sasl_mechanism,
    )


def redis_options(settings: Settings) -> dict[str, Any]:
    """redis-py's keyword arguments beyond the URL (which carries the user, password and TLS).

    >>> redis_options(Settings(redis_url="rediss://u:p@cache:6380/0", redis_ca_file="/ca.pem"))
    {'ssl_ca_certs': '/ca.pem'}
    """
    if urlparse(settings.redis_url).scheme == "rediss" and settings.redis_ca_file:
        return {"ssl_ca_certs": settings.redis_ca_file}
    return {}
