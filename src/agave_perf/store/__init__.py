"""The results store engine: SQLite under $AGAVE_PERF_HOME by default, PostgreSQL by URL.

Only the engine lives here: opening a database by URL, transactions, schema
versions and migrations (``_db.py``), and the evidence chain of append-only,
hashed rows (``_chain.py``). The tables belong to the components that own the
data, each on the shared :data:`metadata` with a :class:`Schema`:
:mod:`agave_perf.bench.storage` (benchmark runs), :mod:`agave_perf.tune.build.storage`
(build runs) and :mod:`agave_perf.plan.storage` (plans, events, gate evidence).
Nothing here imports them.
"""

from agave_perf.store._chain import GENESIS, append_only, digest
from agave_perf.store._db import Migration, Schema, Store, default_url, metadata, open_store

__all__ = [
    "GENESIS",
    "Migration",
    "Schema",
    "Store",
    "append_only",
    "default_url",
    "digest",
    "metadata",
    "open_store",
]
