"""hastack's backend: an items API on PostgreSQL (Patroni) cached in Redis (Sentinel)."""

__version__ = "0.1.0"
