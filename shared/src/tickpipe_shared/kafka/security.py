"""How every Kafka client of tickpipe authenticates and encrypts: one place for aiokafka and
faust, built from ``TICKPIPE_KAFKA_SECURITY_PROTOCOL`` and friends (see docs/configuration.md).
"""

from __future__ import annotations

import ssl
from typing import Any

from tickpipe_shared.config import Settings


def kafka_ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context of ``SSL``/``SASL_SSL`` (``None`` for the plaintext protocols).

    Broker certificates are checked against ``kafka_ssl_cafile`` (the system trust store when
    unset) and, unless ``kafka_ssl_check_hostname`` is off, must name the host connected to.
    A client certificate (``kafka_ssl_certfile``/``kafka_ssl_keyfile``) is presented for mutual
    TLS. Raises :class:`ssl.SSLError`/:class:`OSError` for unreadable or invalid PEM files.
    """
    if not settings.kafka_security_protocol.endswith("SSL"):
        return None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=settings.kafka_ssl_cafile)
    context.check_hostname = settings.kafka_ssl_check_hostname
    if settings.kafka_ssl_certfile:
        password = settings.kafka_ssl_key_password
        context.load_cert_chain(
            settings.kafka_ssl_certfile,
            settings.kafka_ssl_keyfile,
            password.get_secret_value() if password else None,
        )
    return context


def kafka_client_kwargs(settings: Settings) -> dict[str, Any]:
    """Keyword arguments of every aiokafka client (producer, consumer, admin client):
    ``bootstrap_servers``, ``security_protocol`` and, as configured, the SASL credentials and
    the TLS context of :func:`kafka_ssl_context`."""
    kwargs: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "security_protocol": settings.kafka_security_protocol,
    }
    context = kafka_ssl_context(settings)
    if context is not None:
        kwargs["ssl_context"] = context
    if settings.kafka_security_protocol.startswith("SASL_"):
        # Settings validation guarantees mechanism, user name and password here.
        assert settings.kafka_sasl_password is not None
        kwargs["sasl_mechanism"] = settings.kafka_sasl_mechanism
        kwargs["sasl_plain_username"] = settings.kafka_sasl_username
        kwargs["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    return kwargs


def faust_broker_kwargs(settings: Settings) -> dict[str, Any]:
    """Keyword arguments of :class:`faust.App` for the brokers: ``broker`` URLs and, when the
    protocol is not PLAINTEXT, ``broker_credentials`` (faust hands them to aiokafka)."""
    import faust

    kwargs: dict[str, Any] = {
        "broker": [f"kafka://{h.strip()}" for h in settings.kafka_bootstrap.split(",")],
    }
    protocol = settings.kafka_security_protocol
    context = kafka_ssl_context(settings)
    if protocol.startswith("SASL_"):
        assert settings.kafka_sasl_password is not None
        credentials: Any = faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password.get_secret_value(),
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=context,
        )
        kwargs["broker_credentials"] = credentials
    elif context is not None:
        kwargs["broker_credentials"] = faust.SSLCredentials(context)
    return kwargs
