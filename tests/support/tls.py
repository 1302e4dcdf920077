"""TLS handshakes in memory: what a client context accepts, without sockets or servers."""

from __future__ import annotations

import ssl


def server_context(certfile: str, keyfile: str) -> ssl.SSLContext:
    """A server context presenting ``certfile`` (PEM) with ``keyfile``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certfile, keyfile)
    return context


def handshake(client: ssl.SSLContext, server: ssl.SSLContext, host: str) -> None:
    """Complete a TLS handshake between ``client`` (connecting to ``host``) and ``server``.

    Raises :class:`ssl.SSLCertVerificationError` when the client refuses the server's
    certificate (unknown CA, or a name other than ``host`` while the hostname is checked).
    """
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    c = client.wrap_bio(c_in, c_out, server_hostname=host)
    s = server.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):
        for side, outbox, peer_inbox in ((c, c_out, s_in), (s, s_out, c_in)):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                pass
            peer_inbox.write(outbox.read())
    c.do_handshake()  # raises SSLWantReadError if it never completed
