"""The results store: SQLite under $AGAVE_PERF_HOME by default, PostgreSQL by URL.

Components add their own tables in their own modules on the shared
:data:`metadata` and declare them with a :class:`Schema`; see ``_db.py``.
"""

from agave_perf.store._db import Schema, Store, default_url, metadata, open_store

__all__ = ["Schema", "Store", "default_url", "metadata", "open_store"]
