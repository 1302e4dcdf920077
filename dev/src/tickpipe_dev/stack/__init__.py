"""The local stack without Docker: Kafka (KRaft) and PostgreSQL from local binaries, plus the
tickpipe services as background processes. CLI: ``tickpipe-stack``; functions: :mod:`.api`.
"""
