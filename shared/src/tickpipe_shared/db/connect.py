"""Connections to PostgreSQL/TimescaleDB: every asyncpg connection and pool of tickpipe is
opened here, with the TLS of ``TICKPIPE_DATABASE_SSLMODE`` and the password of
``TICKPIPE_DATABASE_PASSWORD`` (see docs/configuration.md)."""

from __future__ import annotations

import ssl
from typing import Any, Literal

import asyncpg

from tickpipe_shared.config import Settings


def database_ssl(settings: Settings) -> ssl.SSLContext | Literal["allow", "prefer", False] | None:
    """asyncpg's ``ssl`` argument for ``settings.database_sslmode`` (libpq's meanings).

    - ``None`` (unset): nothing is passed, the DSN's ``sslmode`` (or asyncpg's ``prefer``) rules;
    - ``disable``: ``False``; ``allow``/``prefer``: the mode itself (TLS when offered, unverified);
    - ``require``: a context that encrypts but checks no certificate;
    - ``verify-ca``: the chain must lead to ``database_sslrootcert`` (any host name);
    - ``verify-full``: the chain as for verify-ca and the certificate must name the host.

    ``database_sslrootcert`` unset means the system trust store. A client certificate
    (``database_sslcert``/``database_sslkey``) is presented when configured. Raises
    :class:`ssl.SSLError`/:class:`OSError` for unreadable or invalid PEM files.
    """
    mode = settings.database_sslmode
    if mode is None:
        return None
    if mode == "disable":
        return False
    if mode in ("allow", "prefer"):
        return mode
    if mode == "require":
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context = ssl.create_default_context(cafile=settings.database_sslrootcert)
        context.check_hostname = mode == "verify-full"
    if settings.database_sslcert:
        password = settings.database_sslkey_password
        context.load_cert_chain(
            settings.database_sslcert,
            settings.database_sslkey,
            password.get_secret_value() if password else None,
        )
    return context


def connect_kwargs(settings: Settings) -> dict[str, Any]:
    """Keyword arguments of ``asyncpg.connect``/``create_pool`` besides the DSN: ``ssl`` from
    :func:`database_ssl` and ``password`` from ``database_password``, each only when set."""
    kwargs: dict[str, Any] = {}
    tls = database_ssl(settings)
    if tls is not None:
        kwargs["ssl"] = tls
    if settings.database_password is not None:
        kwargs["password"] = settings.database_password.get_secret_value()
    return kwargs


async def connect(settings: Settings, dsn: str | None = None, **kwargs: Any) -> asyncpg.Connection:
    """A connection to ``dsn`` (default ``settings.database_url``) with the TLS and password of
    ``settings``; ``kwargs`` go to :func:`asyncpg.connect`. Raises what asyncpg raises
    (:class:`OSError`, :class:`asyncpg.PostgresError`, :class:`TimeoutError`)."""
    target = dsn or settings.database_url.get_secret_value()
    return await asyncpg.connect(target, **connect_kwargs(settings), **kwargs)


async def create_pool(settings: Settings, dsn: str | None = None, **kwargs: Any) -> asyncpg.Pool:
    """A pool of connections as :func:`connect` opens them; ``kwargs`` go to
    :func:`asyncpg.create_pool` (sizes, timeouts, server settings)."""
    target = dsn or settings.database_url.get_secret_value()
    pool = await asyncpg.create_pool(target, **connect_kwargs(settings), **kwargs)
    assert pool is not None  # None only without a running loop's await
    return pool
