# SPDX-License-Identifier: AGPL-3.0-or-later
"""The one door to Synapse's internals: every reach outside its module API, and their check.

Synapse's module API is the contract.  What the module needs beyond it is listed here, each
with why the module API cannot do it; :func:`check_synapse`, called by
``ApplianceModule.__init__``, verifies every reach on the running process and stops Synapse
(:class:`SynapseChanged`, naming the Synapse version and what changed) rather than letting an
upgrade break a rule at the first request.  The module was written against
:data:`WRITTEN_FOR`.

1. ``ModuleApi._hs``: the HomeServer, kept private by the module API; only to reach its main
   data store (``get_datastores().main``), whose class differs by process (``DataStore`` on
   the main process, ``GenericWorkerStore`` on a worker).
2. Store methods (:data:`STORE_METHODS`), all present on workers too:

   * ``get_rooms_for_user``: an external finds in the directory only the people they share a
     room with; ``check_username_for_spam`` runs once per search result, so this must be
     Synapse's cached read, and the module API only reads one room's members at a time;
   * ``get_user_id_by_threepid``: which account an address is bound to (the identity
     service's lookup and store-invite, the invite endpoint); the module API reads a user's
     addresses, not an address's user.

   ``get_user_id_for_open_id_token`` is NOT used: ``GenericWorkerStore`` lacks it (the
   identity service's ``account/register`` answered 500 on a worker).  The OpenID token is
   read from its table instead (3), which every process can do.
3. SQL on Synapse's own tables (:data:`SYNAPSE_COLUMNS`, every table and column the module's
   SQL reads, checked against the database at start-up):

   * ``open_id_tokens``: :func:`user_of_openid_token_txn`, the identity service's
     ``account/register`` (the module API has no OpenID token lookup);
   * ``user_threepids``: :func:`email_domain_accounts_txn`, the accounts each allowlist entry
     admits (the module API lists one user's addresses at a time);
   * ``users``: :func:`users_without_validity_txn`, the active accounts that have no expiry
     yet when account validity is switched on (the module API cannot list users);
   * ``user_threepids``: :func:`new_accounts_with_email_txn`, the accounts waiting for their
     email pusher that now have an address (the module API reads one user's addresses at a
     time; the pass that catches up runs every few seconds);
   * ``pushers``: :func:`email_pusher_addresses_txn`, whether an account losing an address had
     the mails for it (the module API reads no pushers);
   * ``user_daily_visits``, ``user_ips``, ``users``, ``user_threepids``, ``events``,
     ``event_json``, ``current_state_events``: the console's usage statistics, counts only
     (:func:`visitors_by_day_txn` and the functions after it; ``admin_api/statistics.py``
     shapes them); the Admin API has no per-day figures, and Synapse's own (phone-home
     stats) are neither per domain nor per room kind;
   * ``users``, ``profiles``, ``user_threepids``, ``user_ips``, ``user_directory_search``:
     the console's user list (:func:`user_ids_in_range_txn` and the functions after it;
     ``admin_api/user_list_query.py`` plans a page, ``user_list_rows.py`` shapes its rows),
     read a page at a time by keyset; the Admin API counts every matching user and pages by
     offset, which grows with the server.
4. Indexes the module creates on Synapse's ``users`` table (:data:`USERS_INDEXES`), for the
   user list's admins and deactivated pages.
5. ``synapse.storage.engines.PostgresEngine``: which SQL dialect the database speaks
   (:func:`is_postgres`); ``LoggingTransaction.database_engine`` carries it.
6. ``synapse.logging.context.current_context()``: the user whose request stores a file
   (:func:`requesting_user_id`); ``check_media_file_for_spam`` is given no uploader.
7. ``RoomVersion.msc4289_creator_power_enabled``: whether a room's creators have unlimited
   power (room version 12); the module API hands events over with their room version but
   documents none of its flags (:func:`creators_have_unlimited_power`).
8. ``synapse.storage.database.make_conn``: the start-up check reads the schema on a
   connection of its own, as Synapse's own start-up does, since a module's ``__init__`` cannot
   wait for ``run_db_interaction``.
9. ``AuthHandler._check_local_password``: whether a password is an account's local one
   (:meth:`SynapseInternals.local_password_matches`).  With ``auth.password_login: false``
   Synapse's own password check is off (``localdb_enabled: false``) and the module's password
   checker lets externals alone through (``accounts/password_login.py``); the module API has
   no password check.
10. ``ProfileHandler.check_profile_query_allowed``: who may read whose profile.  Synapse has no
    module callback for profile lookups, only ``limit_profile_requests_to_users_who_share_rooms``,
    which would hold for agents too (the directory is theirs);
    :meth:`SynapseInternals.check_profile_queries_with` runs the module's own check after
    Synapse's in the method both profile servlets call: one of the three patches of a Synapse
    method (with 12 and 13).
11. ``HomeServer.get_federation_registry().register_query_handler`` and
    ``get_federation_client().make_query``: a federation query of the module's own
    (``federation/peer_accounts.py``: which account of a peer holds an email address).  The
    module API has no server-to-server call; a federation query is signed by the asking server,
    passes Synapse's federation allowlist, and reaches the handler with its authenticated
    ``origin``: no shared secret between appliances.
12. ``UserDirectoryHandler.search_users`` and the store's ``search_user_dir``: the agents'
    directory answers from the peers too (``federation/peer_directory.py``).  Synapse has no
    module callback that adds results to a user directory search, only one that hides them;
    :meth:`SynapseInternals.extend_user_search_with` appends the peers' results after
    Synapse's own (filtered as before) in the method the search servlet calls, and a peer's
    query is answered from ``search_user_dir``, Synapse's own ranked search.
13. ``RoomListHandler.get_remote_public_room_list``: who may list another server's forums
    (``GET/POST /publicRooms?server=...``).  Synapse has no module callback there;
    :meth:`SynapseInternals.check_remote_room_lists_with` runs the module's check, with the
    requester of the request being served (6), before Synapse asks the other server.
14. ``DeactivateAccountHandler.deactivate_account``: deactivating an account that expired long
    ago (``accounts/validity.py``); the module API cannot deactivate, and the module holds no
    admin token for the Admin API.  The handler runs on workers too (the client API's
    ``/account/deactivate`` is served there).
15. ``HomeServer.config.servernotices.server_notices_mxid``: the server notices user, which
    never expires (the module API does not say who it is).
16. ``HomeServer.get_clock()``: Synapse's ``@cached`` (which the module API exports, for
    ``register_cached_function``) needs the owner's ``server_name`` and ``clock`` since Synapse
    1.135, and the module API keeps its clock private (:func:`cache_owner_clock`).
17. ``HomeServer.get_pusherpool().add_or_update_pusher``: the email pusher of an account made
    while ``notifications.enabled_for_new_users`` is on (``accounts/new_account_mail.py``),
    which Synapse adds itself only in the email flow's registration and the Admin API's
    creation with an address.  The module API can send an HTTP push but not add a pusher.
    Pushers are written by the main process alone (``PusherStore.add_pusher`` is not in a
    worker's ``GenericWorkerStore``; the client API's ``/pushers/set`` stays there too), so
    :meth:`SynapseInternals.add_email_pusher` refuses to run on a worker, and the start-up
    check verifies ``add_pusher`` on the main process only.  The pusher is Synapse's own, with
    the values Synapse's registration gives it (:data:`EMAIL_PUSHER`).
18. ``HomeServer.get_federation_http_client()`` (``get_json``, ``post_json``): the identity
    service's two server-to-server calls of the Matrix specification, towards a peer
    (``federation/externals_relay.py``, ``externals/relayed_invitations.py``): ``GET
    /_matrix/federation/v1/openid/userinfo`` (who an OpenID token of a peer's user belongs
    to, as an identity server checks it at ``account/register``) and ``POST
    /_matrix/federation/v1/3pid/onbind`` (an invited address now has an account: the
    inviting server turns its ``m.room.third_party_invite`` into an invite).  The module API
    has no federation client; Synapse's resolves server names and trusts
    ``federation_custom_ca_list`` as federation does.  And, by SQL on ``open_id_tokens``
    (reach 3), :func:`insert_openid_token_txn`: an OpenID token of a local user for a peer's
    identity service (Synapse's ``insert_open_id_token`` is on the main process only).

Documented module API types that live outside ``synapse.module_api`` and are imported where
they are used: ``synapse.spam_checker_api.RegistrationBehaviour`` (the return value of
``check_registration_for_spam``), and, for type checking only, ``synapse.media._base.FileInfo``
and ``synapse.media.media_storage.ReadableFileWrapper`` (``check_media_file_for_spam``);
``synapse.handlers.sso.MappingException``, which Synapse's OpenID Connect documentation tells a
user-mapping provider to raise (``accounts/sso_mapping.py``); and
``synapse.api.errors.HttpResponseException``, which ``ModuleApi.http_client`` raises on an
answer that is not a success (imported here, :data:`HttpResponseException`, for the callers that
read the other server's refusal).
"""

from __future__ import annotations

import importlib.metadata
import inspect
import secrets
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from synapse.module_api import EventBase, LoggingTransaction, ModuleApi, UserID, create_requester

WRITTEN_FOR = "1.163.2"
SYNAPSE_VERSION = importlib.metadata.version("matrix-synapse")


class SynapseChanged(RuntimeError):
    """This Synapse no longer offers what the module reaches for: it must not start."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = list(problems)
        super().__init__(
            f"The appliance module cannot run on Synapse {SYNAPSE_VERSION} (it was written for "
            f"Synapse {WRITTEN_FOR}): {'; '.join(self.problems)}. "
            "See appliance/synapse_module/synapse_internals.py for each reach and why."
        )


try:  # the names the module imports from Synapse's internals (reaches 5 to 9, 14, 16)
    from synapse.api.errors import HttpResponseException as HttpResponseException
    from synapse.api.room_versions import KNOWN_ROOM_VERSIONS
    from synapse.handlers.auth import AuthHandler
    from synapse.handlers.deactivate_account import DeactivateAccountHandler
    from synapse.logging.context import ContextRequest, LoggingContext, current_context
    from synapse.server import HomeServer
    from synapse.storage.database import make_conn
    from synapse.storage.engines import PostgresEngine
except ImportError as error:  # a renamed or removed internal: say so, with the version
    raise SynapseChanged([str(error)]) from error


STORE_METHODS = ("get_rooms_for_user", "get_user_id_by_threepid", "search_user_dir")
# Reach 17: only the main process writes pushers.
MAIN_STORE_METHODS = ("add_pusher",)
# What Synapse's registration gives an account's email pusher (handlers/register.py,
# _register_email_threepid; the Admin API's user creation uses the same): the address is the
# pushkey and the device name.
EMAIL_PUSHER: dict[str, Any] = {
    "kind": "email",
    "app_id": "m.email",
    "app_display_name": "Email Notifications",
    "lang": None,
    "data": {},
}
PUSHER_PARAMETERS = {
    "user_id",
    "kind",
    "app_id",
    "app_display_name",
    "device_display_name",
    "pushkey",
    "lang",
    "data",
}
HOMESERVER_REACHES = (
    ("get_pusherpool", "add_or_update_pusher"),  # reach 17
    ("get_federation_registry", "register_query_handler"),
    ("get_federation_client", "make_query"),
    ("get_user_directory_handler", "search_users"),  # reach 12
    ("get_room_list_handler", "get_remote_public_room_list"),  # reach 13
    ("get_federation_http_client", "get_json"),  # reach 18
    ("get_federation_http_client", "post_json"),  # reach 18
)

# Every column the module's SQL reads from Synapse's tables, whatever the dialect.
SYNAPSE_COLUMNS: dict[str, tuple[str, ...]] = {
    "users": (
        "name",
        "admin",
        "deactivated",
        "shadow_banned",
        "locked",
        "user_type",
        "creation_ts",
        "is_guest",
        "appservice_id",
    ),
    "profiles": ("user_id", "displayname"),
    "user_threepids": ("user_id", "medium", "address"),
    "user_ips": ("user_id", "last_seen"),
    "user_daily_visits": ("user_id", "timestamp"),
    "events": ("event_id", "room_id", "type", "sender", "origin_server_ts"),
    "event_json": ("event_id", "json"),
    "current_state_events": ("room_id", "type", "state_key", "event_id"),
    "user_directory_search": ("user_id",),
    "open_id_tokens": ("token", "ts_valid_until_ms", "user_id"),
    "pushers": ("user_name", "app_id", "pushkey"),
}
# The user directory's search column: an FTS4 table on SQLite, a tsvector on PostgreSQL.
DIALECT_COLUMNS = {
    "sqlite": {"user_directory_search": ("value",)},
    "postgres": {"user_directory_search": ("vector",)},
}

# Partial indexes on Synapse's users table for the user list (admin_api/user_list_query.py,
# which must keep its conditions word for word: "u.admin = 1", "u.deactivated = 1").  Synapse
# never looks at them; a Synapse migration that rebuilds the table drops them, and the next
# start-up creates them again.
USERS_INDEXES = (
    "CREATE INDEX IF NOT EXISTS appliance_users_admins ON users (name) WHERE admin = 1",
    "CREATE INDEX IF NOT EXISTS appliance_users_deactivated ON users (name) WHERE deactivated = 1",
)


# --- the start-up check ----------------------------------------------------------------------


def check_synapse(api: ModuleApi) -> None:
    """Raise :class:`SynapseChanged` unless every reach holds on this process."""
    problems = api_problems(api)
    if not problems:
        store = api._hs.get_datastores().main  # noqa: SLF001 (reach 1)
        problems = store_problems(store, main_process=api.worker_app is None)
        problems += attribute_problems()
        if not problems:
            problems = column_problems(schema_of(store, api.server_name), dialect_of(store))
    if problems:
        raise SynapseChanged(problems)


def api_problems(api: object) -> list[str]:
    hs = getattr(api, "_hs", None)
    if hs is None:
        return ["ModuleApi has no _hs (the HomeServer)"]
    if not callable(getattr(hs, "get_datastores", None)):
        return ["the HomeServer has no get_datastores()"]
    if not callable(getattr(hs, "get_profile_handler", None)):
        return ["the HomeServer has no get_profile_handler()"]
    check = getattr(hs.get_profile_handler(), "check_profile_query_allowed", None)  # reach 10
    if not callable(check) or list(inspect.signature(check).parameters)[:2] != [
        "target_user",
        "requester",
    ]:
        return ["ProfileHandler.check_profile_query_allowed(target_user, requester) is gone"]
    for getter, method in HOMESERVER_REACHES:  # reaches 11, 12, 13, 17 and 18
        if not callable(getattr(hs, getter, None)):
            return [f"the HomeServer has no {getter}()"]
        if not callable(getattr(getattr(hs, getter)(), method, None)):
            return [f"{getter}() has no {method}"]
    if not hasattr(getattr(hs.config, "servernotices", None), "server_notices_mxid"):  # reach 15
        return ["the HomeServer's config has no servernotices.server_notices_mxid"]
    add_pusher = hs.get_pusherpool().add_or_update_pusher  # reach 17
    if not PUSHER_PARAMETERS <= set(inspect.signature(add_pusher).parameters):
        return [
            "PusherPool.add_or_update_pusher no longer takes "
            + ", ".join(sorted(PUSHER_PARAMETERS))
        ]
    return []


def store_problems(store: object, *, main_process: bool) -> list[str]:
    """What the data store (an instance or a class) lacks of the methods the module calls on
    this process (the main process calls :data:`MAIN_STORE_METHODS` too)."""
    name = store.__name__ if isinstance(store, type) else type(store).__name__
    methods = STORE_METHODS + (MAIN_STORE_METHODS if main_process else ())
    problems = [
        f"the data store {name} has no method {method}"
        for method in methods
        if not _has(store, method)
    ]
    if isinstance(store, type):
        return problems
    # Reach 8: the database the start-up check reads the schema of.
    db_pool = getattr(store, "db_pool", None)
    if db_pool is None:
        problems.append(f"the data store {name} has no db_pool")
    else:
        problems += [
            f"the data store's db_pool has no {attribute}"
            for attribute in ("_database_config", "engine")
            if not hasattr(db_pool, attribute)
        ]
    return problems


def attribute_problems() -> list[str]:
    """Reaches 5 to 7: the attributes the module reads on Synapse's objects."""
    problems = []
    if "database_engine" not in dir(LoggingTransaction):  # reach 5
        problems.append("synapse.storage.database.LoggingTransaction has no database_engine")
    if "request" not in dir(LoggingContext):
        problems.append("synapse.logging.context.LoggingContext has no request")
    if "requester" not in {field.name for field in getattr(ContextRequest, "__attrs_attrs__", ())}:
        problems.append("synapse.logging.context.ContextRequest has no requester")
    if not callable(getattr(AuthHandler, "_check_local_password", None)):  # reach 9
        problems.append("synapse.handlers.auth.AuthHandler has no _check_local_password")
    for getter in ("get_deactivate_account_handler", "get_clock"):  # reaches 14 and 16
        if not callable(getattr(HomeServer, getter, None)):
            problems.append(f"synapse.server.HomeServer has no {getter}()")
    deactivate = getattr(DeactivateAccountHandler, "deactivate_account", None)
    if not callable(deactivate) or not {"user_id", "erase_data", "requester", "by_admin"} <= set(
        inspect.signature(deactivate).parameters
    ):  # reach 14
        problems.append(
            "DeactivateAccountHandler.deactivate_account(user_id, erase_data, requester, "
            "by_admin) is gone"
        )
    flag = "msc4289_creator_power_enabled"
    lacking = [v for v, version in KNOWN_ROOM_VERSIONS.items() if not hasattr(version, flag)]
    if lacking:
        problems.append(f"room versions {', '.join(lacking)} have no {flag}")
    elif not getattr(KNOWN_ROOM_VERSIONS.get("12"), flag, False):
        problems.append(f"room version 12 is unknown or its {flag} is not set")
    return problems


def column_problems(schema: dict[str, set[str]], dialect: str) -> list[str]:
    """What the database lacks of :data:`SYNAPSE_COLUMNS` (schema: table -> its columns)."""
    problems = []
    for table, columns in _expected_columns(dialect).items():
        found = schema.get(table, set())
        if not found:
            problems.append(f"Synapse's database has no table {table}")
            continue
        missing = [column for column in columns if column not in found]
        if missing:
            problems.append(f"the table {table} has no column {', '.join(missing)}")
    return problems


def _expected_columns(dialect: str) -> dict[str, tuple[str, ...]]:
    expected = dict(SYNAPSE_COLUMNS)
    for table, columns in DIALECT_COLUMNS[dialect].items():
        expected[table] = expected[table] + columns
    return expected


def dialect_of(store: Any) -> str:
    return "postgres" if isinstance(store.db_pool.engine, PostgresEngine) else "sqlite"


def schema_of(store: Any, server_name: str) -> dict[str, set[str]]:
    """The columns of each table of :data:`SYNAPSE_COLUMNS`, read on a connection of its own
    (a module's ``__init__`` cannot await ``run_db_interaction``; Synapse's own start-up
    reads its schema the same way)."""
    db_pool = store.db_pool
    connection = make_conn(
        db_config=db_pool._database_config,  # noqa: SLF001 (reach 8)
        engine=db_pool.engine,
        default_txn_name="appliance_synapse_check",
        server_name=server_name,
    )
    try:
        txn = connection.cursor(txn_name="appliance_synapse_check")
        return {table: columns_of_txn(txn, table) for table in SYNAPSE_COLUMNS}
    finally:
        connection.close()


def columns_of_txn(txn: LoggingTransaction, table: str) -> set[str]:
    """The columns of a table (empty if there is no such table)."""
    if is_postgres(txn):
        txn.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = ?",
            (table,),
        )
        return {row[0] for row in txn.fetchall()}
    txn.execute(f"PRAGMA table_info({table})")  # a name from SYNAPSE_COLUMNS, never input
    return {row[1] for row in txn.fetchall()}


def _has(obj: object, name: str) -> bool:
    # Statically: a cached store method refuses to be read from its class.
    try:
        inspect.getattr_static(obj, name)
    except AttributeError:
        return False
    return True


# --- the reaches -------------------------------------------------------------------------------


class SynapseInternals:
    """Reach 2: the main data store's methods, safe on every process."""

    def __init__(self, api: ModuleApi) -> None:
        self._api = api
        # ModuleApi keeps its HomeServer private; Tchap's room access rules module reaches it
        # the same way for the same reason.
        # Any: its class depends on the process (DataStore, GenericWorkerStore).
        self._store: Any = api._hs.get_datastores().main  # noqa: SLF001 (reach 1)
        self._profiles = api._hs.get_profile_handler()  # noqa: SLF001 (reach 10)

    async def rooms_of(self, user_id: str) -> frozenset[str]:
        """The rooms the user has joined (cached by Synapse, invalidated on membership)."""
        return await self._store.get_rooms_for_user(user_id)

    async def user_of_email(self, address: str) -> str | None:
        """The local account the (canonical) address is bound to, if any."""
        return await self._store.get_user_id_by_threepid("email", address)

    async def local_password_matches(self, user_id: str, password: str) -> str | None:
        """Reach 9: the account's canonical ID if password is its local password, else None."""
        auth_handler = self._api._hs.get_auth_handler()  # noqa: SLF001 (reach 1)
        return await auth_handler._check_local_password(user_id, password)  # noqa: SLF001

    def serve_federation_query(
        self, query_type: str, handler: Callable[[dict], Awaitable[dict]]
    ) -> None:
        """Reach 11: answer ``GET /_matrix/federation/v1/query/<query_type>`` with
        ``handler(args)``; Synapse adds the authenticated ``origin`` to ``args``."""
        registry = self._api._hs.get_federation_registry()  # noqa: SLF001 (reach 1)
        registry.register_query_handler(query_type, handler)

    async def federation_query(self, destination: str, query_type: str, args: dict) -> dict:
        """Reach 11: ask another server a federation query (signed, within the allowlist)."""
        client = self._api._hs.get_federation_client()  # noqa: SLF001 (reach 1)
        return await client.make_query(destination, query_type, args)

    async def openid_userinfo(self, destination: str, token: str, timeout_ms: int) -> dict:
        """Reach 18: ``GET /_matrix/federation/v1/openid/userinfo`` on another server: whose
        OpenID token this is (``{"sub": "@user:destination"}``); raises if it does not say."""
        client = self._api._hs.get_federation_http_client()  # noqa: SLF001 (reach 1)
        return await client.get_json(
            destination,
            "/_matrix/federation/v1/openid/userinfo",
            args={"access_token": token},
            timeout=timeout_ms,
            ignore_backoff=True,
        )

    async def post_onbind(self, destination: str, body: dict, timeout_ms: int) -> dict:
        """Reach 18: ``POST /_matrix/federation/v1/3pid/onbind`` on another server."""
        client = self._api._hs.get_federation_http_client()  # noqa: SLF001 (reach 1)
        return await client.post_json(
            destination,
            "/_matrix/federation/v1/3pid/onbind",
            data=body,
            timeout=timeout_ms,
            ignore_backoff=True,
        )

    async def issue_openid_token(self, user_id: str, valid_until_ms: int) -> str:
        """Reach 18 (SQL, reach 3): a new OpenID token of a local user, as
        ``/openid/request_token`` makes one, valid until valid_until_ms."""
        token = secrets.token_urlsafe(24)
        await self._api.run_db_interaction(
            "appliance_issue_openid_token", insert_openid_token_txn, token, valid_until_ms, user_id
        )
        return token

    async def search_directory(self, searcher: str, term: str, limit: int) -> list[dict]:
        """Reach 12: Synapse's own user directory search (best match first), unfiltered: every
        user of the directory but ``searcher``, locked ones left out."""
        found = await self._store.search_user_dir(searcher, term, limit, False)
        return list(found["results"])

    def extend_user_search_with(
        self, extra: Callable[[str, str, int], Awaitable[list[dict]]]
    ) -> None:
        """Reach 12: after Synapse's own results of ``/user_directory/search``, append
        ``extra(searcher, term, room_left)`` (results not already there), up to the limit."""
        # Any: results are Synapse's SearchResult, extended with plain dicts of the same keys.
        handler: Any = self._api._hs.get_user_directory_handler()  # noqa: SLF001 (reach 1)
        synapse_search = handler.search_users

        async def search_users(user_id: str, search_term: str, limit: int) -> Any:
            results = await synapse_search(user_id, search_term, limit)
            room_left = limit - len(results["results"])
            if room_left > 0:
                seen = {found["user_id"] for found in results["results"]}
                more = [
                    r
                    for r in await extra(user_id, search_term, room_left)
                    if r["user_id"] not in seen
                ]
                results["results"] = [*results["results"], *more[:room_left]]
            return results

        # Its only caller is the search servlet.
        handler.search_users = search_users

    def check_remote_room_lists_with(
        self, check: Callable[[str | None, str], Awaitable[None]]
    ) -> None:
        """Reach 13: run ``check(requester, server_name)`` (which raises to refuse) before
        Synapse asks another server for its public rooms."""
        handler: Any = self._api._hs.get_room_list_handler()  # noqa: SLF001 (reach 1)
        synapse_list = handler.get_remote_public_room_list

        async def get_remote_public_room_list(server_name: str, *args: Any, **kwargs: Any) -> Any:
            await check(requesting_user_id(), server_name)
            return await synapse_list(server_name, *args, **kwargs)

        # Its only callers are the two /publicRooms servlets.
        handler.get_remote_public_room_list = get_remote_public_room_list

    async def add_email_pusher(self, user_id: str, address: str) -> None:
        """Reach 17: give the account Synapse's email pusher for its bound address (an upsert
        on the user, app and address: one pusher, whoever adds it first).  Main process only.

        Raises:
            RuntimeError: on a worker, which cannot write pushers.
            SynapseError: 400 ``M_THREEPID_NOT_FOUND`` if the address is not the account's.
        """
        if self._api.worker_app is not None:
            raise RuntimeError("only Synapse's main process adds pushers")
        pool = self._api._hs.get_pusherpool()  # noqa: SLF001 (reach 1)
        await pool.add_or_update_pusher(
            user_id=user_id, device_display_name=address, pushkey=address, **EMAIL_PUSHER
        )

    async def new_accounts_with_email(self, limit: int) -> list[tuple[str, str]]:
        """Reach 3: (user ID, address) for up to limit accounts waiting for their email
        pusher (the module's ``appliance_new_account_mail``) that have an address bound."""
        return await self._api.run_db_interaction(
            "appliance_new_accounts_with_email", new_accounts_with_email_txn, limit
        )

    async def email_pusher_addresses(self, user_id: str) -> list[str]:
        """Reach 3: the addresses of the account's email pushers (Synapse's ``pushers``)."""
        return await self._api.run_db_interaction(
            "appliance_email_pusher_addresses", email_pusher_addresses_txn, user_id
        )

    async def user_of_openid_token(self, token: str, now_ms: int) -> str | None:
        """The user an unexpired OpenID token was issued to (by ``/openid/request_token``)."""
        return await self._api.run_db_interaction(
            "appliance_user_of_openid_token", user_of_openid_token_txn, token, now_ms
        )

    async def deactivate(self, user_id: str) -> None:
        """Reach 14: deactivate the account as a server admin would (its sessions, rooms and
        addresses go; its data is not erased)."""
        handler = self._api._hs.get_deactivate_account_handler()  # noqa: SLF001 (reach 1)
        requester = create_requester(user_id)
        await handler.deactivate_account(user_id, False, requester, by_admin=True)

    def server_notices_user(self) -> str | None:
        """Reach 15: the server notices user's ID, if server notices are on."""
        user = self._api._hs.config.servernotices.server_notices_mxid  # noqa: SLF001
        return None if user is None else str(user)  # a UserID when set

    def check_profile_queries_with(self, check: Callable[[str, str], Awaitable[None]]) -> None:
        """Reach 10: run ``check(requester, target)`` (which raises to refuse) after Synapse's own
        check on every authenticated profile lookup (``GET /profile/{user}[/{field}]``)."""
        synapse_check = self._profiles.check_profile_query_allowed

        async def check_profile_query_allowed(
            target_user: UserID, requester: UserID | None = None
        ) -> None:
            await synapse_check(target_user, requester)
            if requester is not None:
                await check(requester.to_string(), target_user.to_string())

        # One of the three patches of a Synapse method (with 12 and 13): its only callers are the
        # two profile servlets.
        self._profiles.check_profile_query_allowed = check_profile_query_allowed  # type: ignore[method-assign]


def cache_owner_clock(api: ModuleApi) -> Any:
    """Reach 16: the clock an object owning a ``@cached`` method must carry."""
    return api._hs.get_clock()  # noqa: SLF001 (reach 1)


def user_of_openid_token_txn(txn: LoggingTransaction, token: str, now_ms: int) -> str | None:
    """Reach 3: Synapse's own query (``OpenIdStore.get_user_id_for_open_id_token``)."""
    txn.execute(
        "SELECT user_id FROM open_id_tokens WHERE token = ? AND ? <= ts_valid_until_ms",
        (token, now_ms),
    )
    row = txn.fetchone()
    return row[0] if row else None


def insert_openid_token_txn(
    txn: LoggingTransaction, token: str, valid_until_ms: int, user_id: str
) -> None:
    """Reach 3: Synapse's own insert (``OpenIdStore.insert_open_id_token``)."""
    txn.execute(
        "INSERT INTO open_id_tokens (token, ts_valid_until_ms, user_id) VALUES (?, ?, ?)",
        (token, valid_until_ms, user_id),
    )


def email_domain_accounts_txn(txn: LoggingTransaction) -> list[tuple[str, int]]:
    """Reach 3: (domain, how many accounts have an email address there), one row per domain.

    Deactivation removes an account's addresses, so only active accounts count.  Grouped in
    SQL: one pass over the addresses, one row per domain to go through.
    """
    position = "strpos" if is_postgres(txn) else "instr"
    txn.execute(
        f"SELECT substr(address, {position}(address, '@') + 1) AS domain,"
        " COUNT(DISTINCT user_id)"
        " FROM user_threepids WHERE medium = 'email' GROUP BY domain"
    )
    return [(domain, int(accounts)) for domain, accounts in txn.fetchall()]


def users_without_validity_txn(txn: LoggingTransaction, limit: int) -> list[str]:
    """Reach 3: up to limit active, non-guest local accounts with no row in the module's
    account validity table."""
    txn.execute(
        "SELECT u.name FROM users u WHERE u.deactivated = 0 AND u.is_guest = 0 AND NOT EXISTS"
        " (SELECT 1 FROM appliance_account_validity v WHERE v.user_id = u.name)"
        " ORDER BY u.name LIMIT ?",
        (limit,),
    )
    return [row[0] for row in txn.fetchall()]


def new_accounts_with_email_txn(txn: LoggingTransaction, limit: int) -> list[tuple[str, str]]:
    """Reach 3: up to limit (user ID, its lowest email address) of the accounts in the
    module's ``appliance_new_account_mail`` that have an address (the table's key, then
    user_threepids' index on user_id)."""
    txn.execute(
        "SELECT n.user_id, MIN(t.address) FROM appliance_new_account_mail n"
        " JOIN user_threepids t ON (t.user_id = n.user_id AND t.medium = 'email')"
        " GROUP BY n.user_id ORDER BY n.user_id LIMIT ?",
        (limit,),
    )
    return [(user_id, address) for user_id, address in txn.fetchall()]


def email_pusher_addresses_txn(txn: LoggingTransaction, user_id: str) -> list[str]:
    """Reach 3: the pushkeys (addresses) of the user's ``m.email`` pushers."""
    txn.execute(
        "SELECT pushkey FROM pushers WHERE user_name = ? AND app_id = 'm.email'", (user_id,)
    )
    return [pushkey for (pushkey,) in txn.fetchall()]


# --- reach 3: the console's user list (admin_api/user_list_query.py plans a page) ---------------
# ``u`` is Synapse's users table.  An external is a user in the module's record of them.
USER_IS_EXTERNAL = "EXISTS (SELECT 1 FROM appliance_externals x WHERE x.user_id = u.name)"
# Both engines use a partial index (USERS_INDEXES) when the query has its condition word for
# word: keep "u.admin = 1" and "u.deactivated = 1" as they are there.
USER_KINDS = {
    "active": "u.deactivated = 0",
    "agents": f"u.deactivated = 0 AND NOT {USER_IS_EXTERNAL}",
    "externals": f"u.deactivated = 0 AND {USER_IS_EXTERNAL}",
    "admins": "u.admin = 1",
    "deactivated": "u.deactivated = 1",
    "all": "1 = 1",
}


def user_ids_in_range_txn(
    txn: LoggingTransaction,
    bounds: tuple[str, str] | None,
    kind: str,
    start: str,
    forward: bool,
    limit: int,
) -> list[str]:
    """Up to limit local, non-guest users of the kind whose ID lies in bounds (``low <= ID <
    high``; None: any), strictly after start (before it, going back), in ID order: a range
    of the users table's index on ``name``."""
    condition, args = ("u.name >= ? AND u.name < ?", bounds) if bounds else ("1 = 1", ())
    txn.execute(
        f"SELECT u.name FROM users u WHERE {condition}"
        f" AND u.name {'>' if forward else '<'} ? AND u.is_guest = 0"
        f" AND {USER_KINDS[kind]}"
        f" ORDER BY u.name {'ASC' if forward else 'DESC'} LIMIT ?",
        (*args, start, limit),
    )
    return [row[0] for row in txn.fetchall()]


def user_ids_with_email_in_txn(txn: LoggingTransaction, low: str, high: str) -> list[str]:
    """The users with an email address in ``[low, high)`` (a range of user_threepids' index on
    ``(medium, address)``)."""
    txn.execute(
        "SELECT user_id FROM user_threepids WHERE medium = 'email' AND address >= ?"
        " AND address < ?",
        (low, high),
    )
    return [row[0] for row in txn.fetchall()]


def user_ids_with_words_txn(txn: LoggingTransaction, words: list[str]) -> list[str]:
    """The users whose directory entry (user ID and display name) has a word starting with each
    of words, through Synapse's user directory search table (FTS4 on SQLite, a tsvector on
    PostgreSQL).  Words are letters and digits only: they need no quoting in either syntax."""
    if is_postgres(txn):
        query = "SELECT user_id FROM user_directory_search WHERE vector @@ to_tsquery('simple', ?)"
        match = " & ".join(f"{word}:*" for word in words)
    else:
        query = "SELECT user_id FROM user_directory_search WHERE value MATCH ?"
        match = " ".join(f"{word}*" for word in words)
    txn.execute(query, (match,))
    return [row[0] for row in txn.fetchall()]


def users_of_kind_txn(txn: LoggingTransaction, user_ids: list[str], kind: str) -> set[str]:
    """Those of user_ids that are local, non-guest users of the kind."""
    marks = ", ".join("?" for _ in user_ids)
    txn.execute(
        f"SELECT u.name FROM users u WHERE u.name IN ({marks}) AND u.is_guest = 0"
        f" AND {USER_KINDS[kind]}",
        tuple(user_ids),
    )
    return {row[0] for row in txn.fetchall()}


def user_accounts_txn(txn: LoggingTransaction, user_ids: Sequence[str]) -> dict[str, tuple]:
    """user ID -> (name, admin, deactivated, shadow_banned, locked, user_type, creation_ts in
    seconds, external), for those of user_ids that exist."""
    marks = ", ".join("?" for _ in user_ids)
    txn.execute(
        "SELECT u.name, u.admin, u.deactivated, u.shadow_banned, u.locked, u.user_type,"
        f" u.creation_ts, {USER_IS_EXTERNAL} FROM users u WHERE u.name IN ({marks})",
        tuple(user_ids),
    )
    return {row[0]: row for row in txn.fetchall()}


def display_names_txn(txn: LoggingTransaction, user_ids: Sequence[str]) -> dict[str, str | None]:
    """user ID -> display name, for those of user_ids that have a profile."""
    # By localpart, the key Synapse has always indexed: its index on full_user_id is built by
    # a background update, which a freshly upgraded server may not have finished.
    by_localpart = {user_id[1:].split(":", 1)[0]: user_id for user_id in user_ids}
    marks = ", ".join("?" for _ in by_localpart)
    txn.execute(
        f"SELECT user_id, displayname FROM profiles WHERE user_id IN ({marks})",
        tuple(by_localpart),
    )
    return {by_localpart[localpart]: name for localpart, name in txn.fetchall()}


def email_addresses_txn(txn: LoggingTransaction, user_ids: Sequence[str]) -> dict[str, list[str]]:
    """user ID -> its email addresses in order, for those of user_ids that have any."""
    # By user only: with "medium = 'email'" in the query, SQLite picks the (medium, address)
    # index and reads every address on the server.
    marks = ", ".join("?" for _ in user_ids)
    txn.execute(
        f"SELECT user_id, medium, address FROM user_threepids WHERE user_id IN ({marks})"
        " ORDER BY user_id, address",
        tuple(user_ids),
    )
    emails: dict[str, list[str]] = {}
    for user_id, medium, address in txn.fetchall():
        if medium == "email":
            emails.setdefault(user_id, []).append(address)
    return emails


def last_seen_txn(txn: LoggingTransaction, user_ids: Sequence[str]) -> dict[str, int]:
    """user ID -> when any of its devices was last seen (ms), for those ever seen."""
    marks = ", ".join("?" for _ in user_ids)
    txn.execute(
        f"SELECT user_id, MAX(last_seen) FROM user_ips WHERE user_id IN ({marks}) GROUP BY user_id",
        tuple(user_ids),
    )
    return dict(txn.fetchall())


# --- reach 3: the console's usage statistics (admin_api/statistics.py shapes them) -----------
# Counts only: no query here returns a message, a name or an address but a domain.
DAY_MS = 24 * 60 * 60 * 1000


# A user's visit on a day: Synapse's user_daily_visits (a row per device and day, written from
# user_ips every five minutes, days starting at midnight UTC), plus today's visitors it has not
# written yet, read from user_ips as Synapse itself reads them (no guests, no appservice users)
# and counted only when user_daily_visits lacks them over the same days: the big count is the
# plain query on user_daily_visits, the addition a look at today's few.  Externals are counted
# by the same queries kept to the module's record of them (a few rows through the
# (user_id, timestamp) index), and agents are the difference.
_TODAY_FROM = "FROM user_ips i JOIN users u ON (u.name = i.user_id)"
_TODAY_WHERE = (
    " WHERE i.last_seen >= ? AND u.is_guest = 0 AND u.appservice_id IS NULL"
    " AND NOT EXISTS (SELECT 1 FROM user_daily_visits d WHERE d.user_id = i.user_id"
    " AND d.timestamp >= ? AND d.timestamp < ?)"
)
_EXTERNAL_VISITS = " AND v.user_id IN (SELECT user_id FROM appliance_externals)"
_EXTERNAL_TODAY = " AND i.user_id IN (SELECT user_id FROM appliance_externals)"


def _today_visitors_txn(
    txn: LoggingTransaction, start_ms: int, end_ms: int, today_ms: int, externals_only: bool
) -> int:
    """Visitors seen today whom user_daily_visits does not hold on a day in [start, end)."""
    if not start_ms <= today_ms < end_ms:
        return 0
    extra = _EXTERNAL_TODAY if externals_only else ""
    txn.execute(
        f"SELECT COUNT(DISTINCT i.user_id) {_TODAY_FROM}{_TODAY_WHERE}{extra}",
        (today_ms, start_ms, end_ms),
    )
    row = txn.fetchone()
    return int(row[0]) if row else 0


def visitors_by_day_txn(
    txn: LoggingTransaction, since_ms: int, today_ms: int, *, externals_only: bool
) -> dict[int, int]:
    """Day start in ms -> distinct users (or externals only) seen that day, for every day
    from since_ms (a midnight UTC) to today (today_ms, this midnight) that had one."""
    extra = _EXTERNAL_VISITS if externals_only else ""
    txn.execute(
        "SELECT v.timestamp, COUNT(DISTINCT v.user_id) FROM user_daily_visits v"
        f" WHERE v.timestamp >= ?{extra} GROUP BY v.timestamp",
        (since_ms,),
    )
    days = {int(day): int(count) for day, count in txn.fetchall()}
    late = _today_visitors_txn(txn, today_ms, today_ms + DAY_MS, today_ms, externals_only)
    if late:
        days[today_ms] = days.get(today_ms, 0) + late
    return days


def visitors_between_txn(
    txn: LoggingTransaction, start_ms: int, end_ms: int, today_ms: int, *, externals_only: bool
) -> int:
    """Distinct users (or externals only) seen on a day in ``[start_ms, end_ms)``."""
    extra = _EXTERNAL_VISITS if externals_only else ""
    txn.execute(
        "SELECT COUNT(DISTINCT v.user_id) FROM user_daily_visits v"
        f" WHERE v.timestamp >= ? AND v.timestamp < ?{extra}",
        (start_ms, end_ms),
    )
    row = txn.fetchone()
    seen = int(row[0]) if row else 0
    return seen + _today_visitors_txn(txn, start_ms, end_ms, today_ms, externals_only)


def visitors_by_domain_txn(
    txn: LoggingTransaction, since_ms: int, today_ms: int, *, externals_only: bool
) -> dict[str, int]:
    """Email domain -> distinct users (or externals only) seen since since_ms with an
    address there."""
    position = "strpos" if is_postgres(txn) else "instr"
    domain = f"substr(t.address, {position}(t.address, '@') + 1)"
    extra = _EXTERNAL_VISITS if externals_only else ""
    txn.execute(
        f"SELECT {domain} AS domain, COUNT(DISTINCT v.user_id) FROM user_daily_visits v"
        " JOIN user_threepids t ON (t.user_id = v.user_id AND t.medium = 'email')"
        f" WHERE v.timestamp >= ?{extra} GROUP BY domain",
        (since_ms,),
    )
    domains = {name: int(count) for name, count in txn.fetchall()}
    extra = _EXTERNAL_TODAY if externals_only else ""
    txn.execute(
        f"SELECT {domain} AS domain, COUNT(DISTINCT i.user_id) {_TODAY_FROM}"
        " JOIN user_threepids t ON (t.user_id = i.user_id AND t.medium = 'email')"
        f"{_TODAY_WHERE}{extra} GROUP BY domain",
        (today_ms, since_ms, today_ms + DAY_MS),
    )
    for name, count in txn.fetchall():
        domains[name] = domains.get(name, 0) + int(count)
    return domains


def registrations_by_day_txn(txn: LoggingTransaction, since_ms: int) -> list[tuple[int, bool, int]]:
    """(day number since the epoch, external, accounts created that day) from since_ms on;
    no guests, no appservice users.  ``creation_ts`` is in seconds; no index: one pass over
    the users table."""
    txn.execute(
        "SELECT u.creation_ts / 86400, CASE WHEN x.user_id IS NULL THEN 0 ELSE 1 END, COUNT(*)"
        " FROM users u"
        " LEFT JOIN appliance_externals x ON (x.user_id = u.name)"
        " WHERE u.creation_ts >= ? AND u.is_guest = 0 AND u.appservice_id IS NULL"
        " GROUP BY 1, 2",
        (since_ms // 1000,),
    )
    return [(int(day), bool(external), int(count)) for day, external, count in txn.fetchall()]


def messages_by_day_txn(txn: LoggingTransaction, since_ms: int) -> list[tuple[int, int]]:
    """(day number since the epoch, messages): events of type m.room.message or
    m.room.encrypted stored on this server, by origin_server_ts (Synapse's index
    ``events_ts``).  A count: no content is read."""
    txn.execute(
        "SELECT origin_server_ts / 86400000, COUNT(*) FROM events"
        " WHERE origin_server_ts >= ? AND type IN ('m.room.message', 'm.room.encrypted')"
        " GROUP BY 1",
        (since_ms,),
    )
    return [(int(day), int(count)) for day, count in txn.fetchall()]


def rooms_created_txn(
    txn: LoggingTransaction, since_ms: int
) -> list[tuple[str, int, str, str | None, str | None]]:
    """(creator, created at in ms, create event JSON, access rule event JSON or None, join
    rule event JSON or None) for each room created since since_ms, with its current state
    events that decide its kind (``rooms/kinds.py``).  One row per room; the caller keeps
    the local creators'."""
    txn.execute(
        "SELECT e.sender, e.origin_server_ts, cj.json, rj.json, jj.json FROM events e"
        " JOIN event_json cj ON (cj.event_id = e.event_id)"
        " LEFT JOIN current_state_events r ON (r.room_id = e.room_id"
        " AND r.type = 'im.vector.room.access_rules' AND r.state_key = '')"
        " LEFT JOIN event_json rj ON (rj.event_id = r.event_id)"
        " LEFT JOIN current_state_events j ON (j.room_id = e.room_id"
        " AND j.type = 'm.room.join_rules' AND j.state_key = '')"
        " LEFT JOIN event_json jj ON (jj.event_id = j.event_id)"
        " WHERE e.origin_server_ts >= ? AND e.type = 'm.room.create'",
        (since_ms,),
    )
    return [(row[0], int(row[1]), row[2], row[3], row[4]) for row in txn.fetchall()]


# --- reaches 5 to 7 --------------------------------------------------------------------------


def is_postgres(txn: LoggingTransaction) -> bool:
    """Reach 5: whether the database speaks PostgreSQL (else SQLite)."""
    return isinstance(txn.database_engine, PostgresEngine)


def requesting_user_id() -> str | None:
    """Reach 6: the user whose request is being served (None outside an authenticated one).

    Reads the request that Synapse's logging context is attached to, defensively."""
    request = getattr(current_context(), "request", None)
    user = getattr(request, "requester", None)
    return user if isinstance(user, str) and user.startswith("@") else None


def creators_have_unlimited_power(create: EventBase) -> bool:
    """Reach 7: whether the room's version gives its creators unlimited power (v12 on)."""
    return bool(create.room_version.msc4289_creator_power_enabled)
