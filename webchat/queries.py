"""The hot paths' queries, written as SQL: what every Direct Line request and every stream
notification runs.

Django's ORM spends ~150-300 µs building each of these statements (a queryset, its query
tree, the compiler) for ~10 µs of SQLite's work; a POST ran five of them, so building them
was most of its database time (docs/benchmarks.md, "Where a POST's time goes"). Here each
statement is written once, as a template over the models' metadata, rendered once per
database vendor, and run on Django's cursor, so Django's connection handling, transactions,
``on_commit`` and error wrapping all still apply. Values pass through the fields' own
``get_db_prep_save`` and ``from_db_value``, as the ORM would, so SQLite and PostgreSQL store
and read exactly what they did through the ORM. Everything else uses the ORM.

Templates name tables as ``{Model}`` and columns as ``{Model.field}``, or as
``{Model:field}`` qualified with the table (for joins).
"""

import json
import re

from django.db import DEFAULT_DB_ALIAS, connections
from django.utils import timezone

from .models import Activity, Conversation, Tenant, TenantSecret

_MODELS = {model.__name__: model for model in (Activity, Conversation, Tenant, TenantSecret)}
_NAME = re.compile(r"\{(\w+)(?:([.:])(\w+))?\}")
_ACTIVITY_DATA = Activity._meta.get_field("data")
_ACTIVITY_CREATED = Activity._meta.get_field("created")


#: The largest watermark (a signed 64-bit integer on every database).
MAX_SEQUENCE = 2**63 - 1

_rendered = {}


def _render(template: str, connection) -> str:
    """``template`` as SQL for ``connection``'s vendor (rendered once per vendor)."""
    key = (template, connection.vendor)
    sql = _rendered.get(key)
    if sql is None:
        sql = _rendered[key] = _render_for(template, connection)
    return sql


def _render_for(template: str, connection) -> str:
    quote = connection.ops.quote_name
    size = _SIZE_OF_DATA.get(connection.vendor, _SIZE_OF_DATA["sqlite"])
    template = template.replace("{SIZE}", size)

    def name(match):
        model = _MODELS[match.group(1)]
        if match.group(2) is None:
            return quote(model._meta.db_table)
        column = quote(model._meta.get_field(match.group(3)).column)
        if match.group(2) == ":":
            return f"{quote(model._meta.db_table)}.{column}"
        return column

    sql = _NAME.sub(name, template)
    if sql.endswith(" FOR UPDATE") and not connection.features.has_select_for_update:
        # SQLite: the IMMEDIATE transaction already holds the database's write lock.
        sql = sql.removesuffix(" FOR UPDATE")
    return sql


def run(template: str, params, using=None):
    """Execute ``template`` with ``params`` on the ``using`` connection; return its rows."""
    connection = connections[using or DEFAULT_DB_ALIAS]
    with connection.cursor() as cursor:
        cursor.execute(_render(template, connection), params)
        return cursor.fetchall() if cursor.description else None


TENANT_FOR_SECRET = (
    "SELECT {TenantSecret:tenant}, {Tenant:token_epoch} FROM {TenantSecret}"
    " INNER JOIN {Tenant} ON {Tenant:id} = {TenantSecret:tenant}"
    " WHERE {TenantSecret:secret_hash} = %s AND {TenantSecret:revoked} = %s"
)
_CONVERSATION_ROW = (
    "SELECT {Conversation.id}, {Conversation.tenant}, {Conversation.watermark}"
    " FROM {Conversation} WHERE {Conversation.id} = %s"
)
# With what a token's session needs (webchat/tokens.py check_session). The lock below stays
# on the conversation's row alone: FOR UPDATE over the join would lock the tenant's row too,
# serialising every post of the tenant.
CONVERSATION = (
    "SELECT {Conversation:id}, {Conversation:tenant}, {Conversation:watermark},"
    " {Conversation:last_seen}, {Tenant:token_epoch}"
    " FROM {Conversation} INNER JOIN {Tenant} ON {Tenant:id} = {Conversation:tenant}"
    " WHERE {Conversation:id} = %s"
)
LOCK_CONVERSATION = _CONVERSATION_ROW + " FOR UPDATE"
TOUCH_CONVERSATION = (
    "UPDATE {Conversation} SET {Conversation.last_seen} = %s"
    " WHERE {Conversation.id} = %s AND {Conversation.last_seen} < %s"
)
INSERT_ACTIVITY = (
    "INSERT INTO {Activity} ({Activity.conversation}, {Activity.sequence}, {Activity.data},"
    " {Activity.size}, {Activity.created}) VALUES (%s, %s, %s, %s, %s)"
)
SET_WATERMARK = (
    "UPDATE {Conversation} SET {Conversation.watermark} = %s WHERE {Conversation.id} = %s"
)
BUMP_WATERMARK = (
    "UPDATE {Conversation} SET {Conversation.watermark} = {Conversation.watermark} + 1"
    " WHERE {Conversation.id} = %s"
    " RETURNING {Conversation.id}, {Conversation.tenant}, {Conversation.watermark}"
)
#: Bytes of an activity's JSON: its ``size`` as written, else measured (rows from before the
#: column; SQLite stores ASCII-escaped text, as sent; PostgreSQL's jsonb prints unescaped
#: UTF-8, up to 3x shorter than sent: ``webchat.pages`` cuts again by what it encodes).
_SIZE_OF_DATA = {
    "sqlite": "COALESCE({Activity.size}, LENGTH({Activity.data}))",
    "postgresql": "COALESCE({Activity.size}, OCTET_LENGTH({Activity.data}::text))",
}
# The rows after the watermark, at most LIMIT, up to the first one that reaches the byte
# budget: the window sums the sizes of the rows before each one, and only over the LIMIT
# rows picked first, so a long backlog costs no more than a page.
ACTIVITIES_PAGE = (
    "SELECT {Activity.sequence}, {Activity.data}, nbytes FROM {Activity} JOIN ("
    "SELECT seq, nbytes, SUM(nbytes) OVER (ORDER BY seq ROWS BETWEEN UNBOUNDED PRECEDING"
    " AND 1 PRECEDING) AS nbefore FROM ("
    "SELECT {Activity.sequence} AS seq, {SIZE} AS nbytes FROM {Activity}"
    " WHERE {Activity.conversation} = %s AND {Activity.sequence} > %s"
    " AND {Activity.sequence} <= %s ORDER BY {Activity.sequence} LIMIT %s) AS picked"
    ") AS page ON {Activity.conversation} = %s AND {Activity.sequence} = seq"
    " WHERE nbefore IS NULL OR nbefore < %s ORDER BY {Activity.sequence}"
)


def tenant_for_secret(secret_hash: str, using=None) -> tuple[int, int] | None:
    """``(tenant id, its token epoch)`` for the (not revoked) secret with this hash, or None."""
    rows = run(TENANT_FOR_SECRET, [secret_hash, False], using)
    return tuple(rows[0]) if rows else None


def tenant_id_for_secret(secret_hash: str, using=None):
    """The id of the tenant owning the (not revoked) secret with this hash, or None."""
    found = tenant_for_secret(secret_hash, using)
    return found[0] if found else None


def conversation(conversation_id: str, using=None) -> Conversation | None:
    """The conversation with its ``id``, ``tenant_id``, ``watermark`` and ``last_seen``
    loaded (``created`` is deferred, as with ``.only()``), and its tenant's token epoch as
    ``tenant_token_epoch`` (as an annotation would), or None."""
    rows = run(CONVERSATION, [conversation_id], using)
    if not rows:
        return None
    fields = ["id", "tenant_id", "watermark", "last_seen"]
    found = Conversation.from_db(using or DEFAULT_DB_ALIAS, fields, rows[0][:4])
    found.tenant_token_epoch = rows[0][4]
    return found


def touch_conversation(conversation_id: str, seen_at: int, using=None) -> None:
    """Record that a client used the conversation at ``seen_at`` (Unix seconds); never moves
    ``last_seen`` back."""
    run(TOUCH_CONVERSATION, [seen_at, conversation_id, seen_at], using)


def insert_activity(conversation_id: str, sequence: int, data: dict, size: int, using=None):
    """Store one activity row, ``size`` the bytes of its JSON as sent (inside the caller's
    transaction)."""
    connection = connections[using or DEFAULT_DB_ALIAS]
    run(INSERT_ACTIVITY, [
        conversation_id,
        sequence,
        _ACTIVITY_DATA.get_db_prep_save(data, connection),
        size,
        _ACTIVITY_CREATED.get_db_prep_save(timezone.now(), connection),
    ], using)  # fmt: skip


def bump_watermark(conversation_id: str, using=None):
    """Inside a transaction: add one to the conversation's watermark, locking its row until
    the end of the transaction; return ``(id, tenant_id, new watermark)``, or None if there
    is no such conversation. One statement where the database can return what it updated
    (PostgreSQL, SQLite 3.35+), else a locking read and an update."""
    connection = connections[using or DEFAULT_DB_ALIAS]
    if connection.features.can_return_columns_from_insert:
        rows = run(BUMP_WATERMARK, [conversation_id], using)
        return tuple(rows[0]) if rows else None
    rows = run(LOCK_CONVERSATION, [conversation_id], using)
    if not rows:
        return None
    found, tenant_id, watermark = rows[0]
    run(SET_WATERMARK, [watermark + 1, found], using)
    return found, tenant_id, watermark + 1


def activities_page(conversation_id, watermark, *, limit, max_bytes, upto=None, using=None):
    """``[(sequence, data, stored size), ...]`` after ``watermark`` (and at most ``upto``),
    oldest first: at most ``limit`` rows, and no row after the stored JSON of those before
    it reaches ``max_bytes`` (so at least one row when there is one: paging moves on)."""
    connection = connections[using or DEFAULT_DB_ALIAS]
    upto = MAX_SEQUENCE if upto is None else upto
    params = [conversation_id, watermark, upto, limit, conversation_id, max_bytes]
    decode = _ACTIVITY_DATA.from_db_value
    return [
        (sequence, decode(data, None, connection), size)
        for sequence, data, size in run(ACTIVITIES_PAGE, params, using)
    ]


_WATERMARKS = (
    "SELECT {Conversation.id}, {Conversation.tenant}, {Conversation.watermark}"
    " FROM {Conversation} WHERE {Conversation.id} "
)
# The whole list as one parameter, so one statement whatever the number of ids: a JSON array
# on SQLite (json_each is built in since 3.38), an array on PostgreSQL.
_ID_LIST = {"sqlite": "IN (SELECT value FROM json_each(%s))", "postgresql": "= ANY(%s)"}
#: Ids per statement elsewhere: SQLite's oldest builds allow 999 parameters per statement.
WATERMARK_CHUNK = 900


def watermarks(conversation_ids, using=None):
    """``{id: (tenant id, watermark)}`` of the conversations that exist among
    ``conversation_ids``: one statement (one per :data:`WATERMARK_CHUNK` ids on databases
    other than SQLite 3.38+ and PostgreSQL). The stream catch-up's sweep."""
    ids = list(conversation_ids)
    if not ids:
        return {}
    connection = connections[using or DEFAULT_DB_ALIAS]
    one = _ID_LIST.get(connection.vendor)
    if connection.vendor == "sqlite" and not _has_json_each(connection):
        one = None
    if one is not None:
        batches = [(one, [json.dumps(ids) if connection.vendor == "sqlite" else ids])]
    else:
        batches = [
            (f"IN ({', '.join(['%s'] * len(chunk))})", chunk)
            for chunk in (ids[i:i + WATERMARK_CHUNK] for i in range(0, len(ids), WATERMARK_CHUNK))
        ]
    found = {}
    for where, params in batches:
        for cid, tenant, watermark in run(_WATERMARKS + where, params, using):
            found[cid] = (str(tenant), watermark)
    return found


def _has_json_each(connection):
    return connection.Database.sqlite_version_info >= (3, 38)
