"""SQL databases through SQLAlchemy 2: :class:`SQLSource`, :class:`SQLSink`, :class:`SQLExecute`.

Any database SQLAlchemy speaks works. SQLite (``sqlite:///file.db``) needs nothing more;
others need their driver (for PostgreSQL ``pip install 'psycopg[binary]'`` and a URL such as
``postgresql+psycopg://user:password@host/db``). Install the extra with
``pip install 'nanostream[sql]'``. Values always travel as bound parameters, never inside
SQL text, and passwords in URLs are masked in reprs, logs and errors.

Example:
    >>> import tempfile, nanostream
    >>> from nanostream.nodes.sql import SQLSink, SQLSource
    >>> tmp = tempfile.TemporaryDirectory()
    >>> url = f"sqlite:///{tmp.name}/shop.db"
    >>> rows = [{"id": 1, "fruit": "apple"}, {"id": 2, "fruit": "pear"}]
    >>> sink = SQLSink(url, "fruits", create=True)
    >>> nanostream.from_iterable(rows) > sink
    SQLSink(name=None, url='sqlite:///.../shop.db', table='fruits', mode='insert')
    >>> sink.global_start()
    >>> got = nanostream.testing.Collect()
    >>> SQLSource(url, "SELECT id, fruit FROM fruits ORDER BY id") > got
    Collect(name=None)
    >>> got.global_start()
    >>> got.items
    [{'id': 1, 'fruit': 'apple'}, {'id': 2, 'fruit': 'pear'}]
    >>> tmp.cleanup()
"""

from __future__ import annotations

from .._toolkit import ConnectorError
from .execute import SQLExecute
from .sink import SQLSink
from .source import SQLSource

__all__ = ["ConnectorError", "SQLExecute", "SQLSink", "SQLSource"]
