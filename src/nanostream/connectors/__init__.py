"""The connectors: nodes that read from and write to the world outside a pipeline.

Files (:mod:`~nanostream.connectors.files`), CSV and JSON lines
(:mod:`~nanostream.connectors.formats`), Parquet and Arrow files
(:mod:`~nanostream.connectors.columnar`), folder watching (:mod:`~nanostream.connectors.watch`),
SQL (:mod:`~nanostream.connectors.sql`), DuckDB (:mod:`~nanostream.connectors.duckdb`), HTTP
(:mod:`~nanostream.connectors.http`), Redis streams (:mod:`~nanostream.connectors.redis`) and
the dead-letter file
(:mod:`~nanostream.connectors.deadletter`), with the private helpers they share. The public
import path of every connector is :mod:`nanostream.nodes` (``nanostream.nodes.sql`` and so on).

Example:
    >>> import nanostream.connectors.files
    >>> nanostream.connectors.files.FileWriter is nanostream.nodes.FileWriter
    True
"""
