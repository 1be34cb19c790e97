"""The ERP source's SQL dialects: Postgres and MySQL/MariaDB behind one small interface.

Everything the extractor needs from the database goes through a :class:`Session`: one
read-only REPEATABLE READ snapshot in which the count, the key listing and the rows are read,
so that the three describe the same state of the source.

Rows come back as **text**, column by column, in Arrow record batches of ``batch_size`` rows
(``tally.sources.erp.convert`` types them, in one code path for both dialects):

* Postgres: ``COPY (SELECT …) TO STDOUT (FORMAT csv)`` read with libpq's ``PQgetCopyData``
  and parsed by Arrow's CSV reader (C++). Text COPY is what the server produces fastest, and
  parsing CSV in Arrow is much cheaper than building a Python object per value (binary COPY
  would need a per-value Python decoder). Session ``TimeZone`` is UTC, so ``timestamptz``
  values carry ``+00``.
* MySQL/MariaDB: an unbuffered cursor (PyMySQL ``SSCursor``: the server streams, the client
  holds one batch) with every converter switched off, so values arrive as the server's text.
  The session ``time_zone`` is the configured source time zone (UTC by default), in which
  ``TIMESTAMP`` and ``DATETIME`` values are rendered without an offset.

Values are embedded as literals escaped by the driver (``literal``), never by string
formatting, because Postgres ``COPY`` takes no bind parameters.
"""

from __future__ import annotations

import contextlib
import queue
import select
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.csv as pacsv

from tally.core.config import PostgresConn
from tally.lake.checksum import MOD, mysql_key_hash_sql, postgres_key_hash_sql

if TYPE_CHECKING:
    from tally.sources.erp.convert import Converted, Converter


@dataclass(frozen=True)
class MySQLConn:
    """A MySQL or MariaDB ERP database (``tally_erp`` of type ``mysql``)."""

    host: str
    port: int
    user: str
    password: str
    dbname: str
    unix_socket: str | None = None

    def redacted(self) -> str:
        return f"mysql://{self.user}:***@{self.host}:{self.port}/{self.dbname}"


ErpConn = PostgresConn | MySQLConn


class SourceError(RuntimeError):
    """The ERP database refused a statement (the message names the statement)."""


class Session:
    """One read-only snapshot on the source. Subclasses implement the dialect."""

    name = "?"
    # Arrow type of the text the dialect's ``key_hash_sql`` renders (parsed, then viewed as uint64).
    key_hash_type: pa.DataType = pa.int64()

    def quote(self, ident: str) -> str:
        raise NotImplementedError

    def literal(self, value: Any) -> str:
        raise NotImplementedError

    def row(self, query: str) -> tuple:
        raise NotImplementedError

    def scalar(self, query: str) -> Any:
        return self.row(query)[0]

    def key_hash_sql(self, column_sql: str) -> str:
        """Per-row ``int(md5(str(key))[:16], 16)`` (``tally.lake.checksum.key_hash``) computed by the source."""
        raise NotImplementedError

    def count_and_checksum(self, table: str, where: str, key_sql: str) -> tuple[int, int, int]:
        """Rows in the window, rows with a key, and the sum of their key hashes modulo 2**64."""
        # signed or unsigned, the hashes are congruent modulo 2**64; the database sums exactly
        # (numeric / DECIMAL), Python reduces
        row = self.row(f"SELECT count(*), count({key_sql}), coalesce(sum({self.key_hash_sql(key_sql)}), 0) "  # noqa: S608
                       f"FROM {self.quote(table)} WHERE {where}")
        return int(row[0]), int(row[1]), int(row[2]) % MOD

    def stream_text(self, query: str, columns: list[str], batch_size: int) -> Iterator[pa.RecordBatch]:
        """Rows of ``query`` as record batches of string columns named ``columns``."""
        raise NotImplementedError

    def stream_converted(self, query: str, columns: list[str], batch_size: int, converter: Converter
                         ) -> Iterator[Converted]:
        """Rows of ``query`` typed by ``converter``, converted off the consumer's thread."""
        raise NotImplementedError

    def count(self, table: str, where: str) -> int:
        return int(self.scalar(f"SELECT count(*) FROM {self.quote(table)} WHERE {where}"))  # noqa: S608

    def columns(self, table: str) -> dict[str, str]:
        """The table's columns and their data types (``information_schema.columns``), in order;
        empty when the table is not visible there."""
        raise NotImplementedError


# -- Postgres ---------------------------------------------------------------------------------
class PostgresSession(Session):
    name = "postgres"
    key_hash_type = pa.int64()

    def __init__(self, conn) -> None:  # a psycopg.Connection inside a transaction
        self.conn = conn

    def quote(self, ident: str) -> str:
        from psycopg import sql

        return sql.Identifier(ident).as_string(self.conn)

    def literal(self, value: Any) -> str:
        from psycopg import sql

        return sql.Literal(value).as_string(self.conn)

    def row(self, query: str) -> tuple:
        return self.conn.execute(query).fetchone()

    def key_hash_sql(self, column_sql: str) -> str:
        return postgres_key_hash_sql(column_sql, self.conn.info.server_version)

    def columns(self, table: str) -> dict[str, str]:
        # the table as the extract's queries resolve it (search_path), the type without modifiers
        rows = self.conn.execute(
            "SELECT a.attname, format_type(a.atttypid, NULL) FROM pg_attribute a"
            " WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            (self.quote(table),)).fetchall()
        return {name: type_ for name, type_ in rows}

    def stream_text(self, query: str, columns: list[str], batch_size: int) -> Iterator[pa.RecordBatch]:
        copy_sql = f"COPY ({query}) TO STDOUT (FORMAT csv)"
        yield from prefetch(self._csv_blocks(copy_sql, batch_size), lambda blob: parse_csv(blob, columns))

    def stream_converted(self, query: str, columns: list[str], batch_size: int, converter: Converter
                         ) -> Iterator[Converted]:
        """Three stages in step: the socket is read in one thread, Arrow parses the previous
        block straight into the target types in a second, the consumer writes in its own."""
        blocks = prefetch(self._csv_blocks(f"COPY ({query}) TO STDOUT (FORMAT csv)", batch_size), lambda b: b)
        yield from prefetch(blocks, lambda blob: converter.convert_csv(blob, columns))

    def _csv_blocks(self, copy_sql: str, batch_size: int) -> Iterator[bytes]:
        """Raw CSV blocks of ``batch_size`` rows (each a whole number of rows) from a COPY.

        Uses libpq directly (``PQgetCopyData`` in non-blocking mode, waiting in ``select``,
        which releases the GIL): psycopg's ``Copy`` iterator costs several times more per row.
        """
        from psycopg import pq

        pgconn = self.conn.pgconn
        pgconn.send_query(copy_sql.encode())
        result = pgconn.get_result()
        if result is None or result.status != pq.ExecStatus.COPY_OUT:
            message = (result.error_message if result is not None else pgconn.error_message).decode(errors="replace")
            while pgconn.get_result() is not None:
                pass
            raise SourceError(f"ERP COPY failed: {message.strip()}\nstatement: {copy_sql[:500]}")
        get, consume, fd = pgconn.get_copy_data, pgconn.consume_input, pgconn.socket
        # Each row is copied into one growing buffer and its bytes object dropped at once: keeping
        # a batch of row objects alive to join them later costs 2.5x the CPU of the whole loop.
        block, rows = bytearray(), 0
        finished = False
        try:
            while True:
                nbytes, data = get(1)
                if nbytes > 0:
                    block += data
                    rows += 1
                    if rows >= batch_size:
                        yield bytes(block)
                        block, rows = bytearray(), 0
                elif nbytes == 0:
                    select.select([fd], [], [])
                    consume()
                elif nbytes == -1:
                    finished = True
                    break
                else:
                    raise SourceError(f"ERP COPY broke off: {pgconn.error_message.decode(errors='replace')}")
            if rows:
                yield bytes(block)
        finally:
            _finish_copy(pgconn, copy_sql, finished)


def _finish_copy(pgconn, copy_sql: str, finished: bool) -> None:
    """Collect the COPY's final result (cancelling it first if we stopped reading early)."""
    from psycopg import pq

    if not finished:
        with contextlib.suppress(Exception):
            pgconn.get_cancel().cancel()
        while True:  # drain what was already sent
            nbytes, _ = pgconn.get_copy_data(0)
            if nbytes < 0:
                break
    errors = []
    while (result := pgconn.get_result()) is not None:
        if result.status == pq.ExecStatus.FATAL_ERROR:
            errors.append(result.error_message.decode(errors="replace").strip())
    if errors and "canceling statement" not in errors[0]:
        raise SourceError(f"ERP COPY failed: {errors[0]}\nstatement: {copy_sql[:500]}")


def parse_csv(blob: bytes, columns: list[str], types: dict[str, pa.DataType] | None = None,
              bools: tuple[list[str], list[str]] | None = None) -> pa.RecordBatch:
    """Postgres CSV: an unquoted empty field is NULL, a quoted one the empty string.

    Every column is read as text unless ``types`` names its Arrow type (then Arrow converts
    while parsing and raises ``ArrowInvalid`` on a value it cannot convert); ``bools`` are the
    true and false spellings for boolean columns.
    """
    types = types or {}
    true_values, false_values = bools or ([], [])
    table = pacsv.read_csv(
        pa.py_buffer(blob),
        read_options=pacsv.ReadOptions(column_names=columns, block_size=max(1 << 20, len(blob) + 1),
                                       use_threads=False),
        # a line break inside a value is always quoted; the slower parser only when a quote is there
        parse_options=pacsv.ParseOptions(newlines_in_values=b'"' in blob),
        convert_options=pacsv.ConvertOptions(column_types={c: types.get(c, pa.string()) for c in columns},
                                             null_values=[""], strings_can_be_null=True,
                                             quoted_strings_can_be_null=False, true_values=true_values,
                                             false_values=false_values),
    )
    if not table.num_rows:
        return pa.RecordBatch.from_arrays([pa.array([], types.get(c, pa.string())) for c in columns], names=columns)
    return table.combine_chunks().to_batches()[0]


def _empty_text(columns: list[str]) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays([pa.array([], pa.string()) for _ in columns], names=columns)


# -- MySQL / MariaDB --------------------------------------------------------------------------
class MySQLSession(Session):
    name = "mysql"
    key_hash_type = pa.uint64()

    def __init__(self, conn, timezone: str) -> None:  # a pymysql.Connection inside a transaction
        self.conn = conn
        self.timezone = timezone

    def quote(self, ident: str) -> str:
        return "`" + ident.replace("`", "``") + "`"

    def literal(self, value: Any) -> str:
        if isinstance(value, datetime):
            if value.tzinfo is not None:  # the session renders and compares in the source time zone
                from zoneinfo import ZoneInfo

                value = value.astimezone(ZoneInfo(self.timezone) if self.timezone != "UTC" else UTC)
            value = value.replace(tzinfo=None)
        elif not isinstance(value, str | int | float | Decimal | date | type(None)):
            raise TypeError(f"no MySQL literal for {type(value).__name__}")
        return self.conn.escape(value)

    def row(self, query: str) -> tuple:
        with self.conn.cursor() as cur:
            cur.execute(query)
            return cur.fetchone()

    def key_hash_sql(self, column_sql: str) -> str:
        return mysql_key_hash_sql(column_sql)

    def columns(self, table: str) -> dict[str, str]:
        with self.conn.cursor() as cur:
            cur.execute("SELECT column_name, data_type FROM information_schema.columns"
                        " WHERE table_schema = DATABASE() AND table_name = %s ORDER BY ordinal_position", (table,))
            return {name: type_.lower() for name, type_ in cur.fetchall()}

    def stream_text(self, query: str, columns: list[str], batch_size: int) -> Iterator[pa.RecordBatch]:
        yield from prefetch(self._row_batches(query, batch_size), lambda rows: _rows_to_text(rows, columns))

    def stream_converted(self, query: str, columns: list[str], batch_size: int, converter: Converter
                         ) -> Iterator[Converted]:
        yield from prefetch(self._row_batches(query, batch_size),
                            lambda rows: converter.convert(_rows_to_text(rows, columns)))

    def _row_batches(self, query: str, batch_size: int) -> Iterator[list[tuple]]:
        import pymysql.cursors

        cur = self.conn.cursor(pymysql.cursors.SSCursor)
        try:
            cur.execute(query)
            while rows := cur.fetchmany(batch_size):
                yield rows
        finally:
            cur.close()  # reads and discards what is left, so the connection stays usable


def _rows_to_text(rows: list[tuple], columns: list[str]) -> pa.RecordBatch:
    if not rows:
        return _empty_text(columns)
    arrays = [pa.array(col, pa.string()) for col in zip(*rows, strict=True)]
    return pa.RecordBatch.from_arrays(arrays, names=columns)


# -- sessions ---------------------------------------------------------------------------------
@contextlib.contextmanager
def open_session(conn: ErpConn, timezone: str = "UTC") -> Iterator[Session]:
    """A read-only REPEATABLE READ snapshot on the ERP database."""
    if isinstance(conn, MySQLConn):
        yield from _mysql_session(conn, timezone)
    elif isinstance(conn, PostgresConn):
        yield from _postgres_session(conn)
    else:
        raise TypeError(f"unsupported ERP connection {type(conn).__name__}")


def _postgres_session(conn_info: PostgresConn) -> Iterator[Session]:
    import psycopg

    with psycopg.connect(conn_info.conninfo()) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        with conn.transaction():
            conn.execute("SET LOCAL TimeZone TO 'UTC'")
            conn.execute("SET LOCAL DateStyle TO 'ISO, YMD'")
            conn.execute("SET LOCAL extra_float_digits TO 3")
            yield PostgresSession(conn)


def _mysql_session(conn_info: MySQLConn, timezone: str) -> Iterator[Session]:
    import pymysql
    import pymysql.converters

    conn = pymysql.connect(
        host=conn_info.host, port=conn_info.port, user=conn_info.user, password=conn_info.password,
        database=conn_info.dbname, unix_socket=conn_info.unix_socket, charset="utf8mb4",
        # encoders only (keys are types), no decoders (keys are field type codes): every value
        # arrives as the server's text and is typed later, in Arrow
        conv=dict(pymysql.converters.encoders),
        autocommit=False,
    )
    try:
        with conn.cursor() as cur:
            zone = "+00:00" if timezone == "UTC" else timezone
            cur.execute("SET SESSION time_zone = %s", (zone,))
            cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        yield MySQLSession(conn, timezone)
        conn.rollback()  # read only: nothing to commit
    finally:
        conn.close()


# -- prefetch ---------------------------------------------------------------------------------
_DONE = object()


def prefetch(source: Iterator, convert, depth: int = 2) -> Iterator:
    """Run ``source`` (network reads) in a thread, ``depth`` items ahead of the consumer.

    Reading the socket and parsing/typing/writing the previous batch overlap; memory stays
    bounded by ``depth`` batches. ``convert`` runs in the reading thread too (Arrow releases
    the GIL while parsing). A consumer that stops early makes the reader stop at its next item.
    """
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for item in source:
                if not put(("item", convert(item))):
                    break
        except BaseException as exc:  # handed to the consumer
            put(("error", exc))
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()
            put(("done", _DONE))

    thread = threading.Thread(target=run, name="tally-erp-reader", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = q.get()
            if kind == "item":
                yield value
            elif kind == "error":
                raise value
            else:
                break
    finally:
        stop.set()
        thread.join()
