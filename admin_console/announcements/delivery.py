# SPDX-License-Identifier: AGPL-3.0-or-later
"""The job that delivers one announcement: a thread of the console walking the audience page by
page (the module's user list, keyset pages, in user ID order) and sending each recipient their
notice, so the operator's request returns at once whatever the audience's size; the progress
and the last recipient done are written to the announcements table after every batch.

A delivery survives the console: the job holds a lease on its announcement, renewed after
every batch; a console restarted, or a gunicorn worker that died, leaves an announcement
"running" with an expired lease, and the resume loop of any console worker (`resume_interrupted`,
every RESUME_CHECK_SECONDS) takes it over from the recipient after the last batch recorded. A
recipient of the batch that was being sent when the process died may get the notice twice;
nobody is skipped.

Every call to Synapse has the client's timeout, and the job gives up after a few recipients in a
row find Synapse unreachable, so it always ends. A few sends run at once.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from flask import Flask, current_app

from admin_console import db, leases
from admin_console.announcements import store
from admin_console.audit import store as audit_store
from admin_console.synapse_admin import (
    SynapseClient,
    SynapseRefused,
    SynapseUnavailable,
    client,
    notices,
)
from admin_console.synapse_admin.notices import bilingual_content
from admin_console.synapse_admin.user_list import list_user_page
from appliance.operations.service_account import SERVICE_LOCALPART

logger = logging.getLogger(__name__)
PAGE_SIZE = 200
MAX_UNAVAILABLE_IN_A_ROW = 5
PARALLEL_SENDS = 4
BATCH = PARALLEL_SENDS * 4
# A batch takes at most 4 rounds of sends, each within the client's timeout (10 s by default):
# a live job renews its lease well before it expires.
LEASE_SECONDS = 120
RESUME_CHECK_SECONDS = 60


def recipients(
    synapse: SynapseClient, announcement: store.Announcement, skip: frozenset[str]
) -> Iterator[tuple[str, str]]:
    """The audience after `resume_from`, in user ID order: one user, or the active agents (of
    one email domain); each with the cursor of its page in the user list ("": the first)."""
    if announcement.audience == "user":
        if not announcement.resume_from:
            yield announcement.target, ""
        return
    cursor = announcement.resume_page
    while True:
        page = list_user_page(
            synapse, kind="agents", search="", cursor=cursor or None, limit=PAGE_SIZE
        )
        for user in page.users:
            if user.user_id in skip or user.user_id <= announcement.resume_from:
                continue
            domains = {email.rpartition("@")[2].lower() for email in user.emails}
            if announcement.audience == "domain" and announcement.target not in domains:
                continue
            yield user.user_id, cursor
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


def _lease(announcement_id: int) -> str:
    return f"announcement {announcement_id}"


def deliver(
    *,
    database: str,
    synapse: SynapseClient,
    announcement: store.Announcement,
    skip: frozenset[str],
    holder: str,
) -> None:
    """Send to every recipient left, counting; then audit the outcome. Does nothing if another
    job holds the announcement's lease; stops quietly if another job took it over."""
    connection = db.connect(database)
    lease = _lease(announcement.id)
    if not leases.acquire(connection, lease, holder=holder, seconds=LEASE_SECONDS, now=time.time()):
        connection.close()
        return
    # Read again under the lease: the job it takes over may have finished, or gone further,
    # since the caller read it.
    announcement = store.get(connection, announcement.id) or announcement
    if not announcement.running:
        leases.release(connection, lease, holder=holder)
        connection.close()
        return
    content = bilingual_content(announcement.text_fr, announcement.text_en)
    stopped = ""

    def send_one(user_id: str) -> tuple[str, Exception | None]:
        try:
            notices.send(synapse, user_id, content)
        except (SynapseRefused, SynapseUnavailable) as error:
            return user_id, error
        return user_id, None

    try:
        unavailable = 0
        # A few sends at once (Synapse makes each recipient's notices room on the first one);
        # the counts are written here, in the job's thread, which owns the connection.
        with ThreadPoolExecutor(max_workers=PARALLEL_SENDS) as pool:
            for batch in _batches(recipients(synapse, announcement, skip), BATCH):
                outcomes = list(pool.map(send_one, [user_id for user_id, _page in batch]))
                failures = [(user, error and f"{error}") for user, error in outcomes]
                store.count_batch(connection, announcement.id, failures, page=batch[-1][1])
                for _user_id, error in outcomes:
                    unavailable = unavailable + 1 if isinstance(error, SynapseUnavailable) else 0
                if unavailable >= MAX_UNAVAILABLE_IN_A_ROW:
                    stopped = "stopped: Synapse unavailable"
                    break
                if not leases.acquire(
                    connection, lease, holder=holder, seconds=LEASE_SECONDS, now=time.time()
                ):
                    logger.warning("announcement %d: taken over by another job", announcement.id)
                    connection.close()
                    return
    except (SynapseRefused, SynapseUnavailable) as error:  # listing the audience
        stopped = f"stopped: the recipients cannot be listed ({error})"
    except Exception as error:  # never leave the announcement "running" forever
        logger.exception("announcement %d", announcement.id)
        stopped = f"stopped: {type(error).__name__}"
    if not leases.acquire(connection, lease, holder=holder, seconds=LEASE_SECONDS, now=time.time()):
        logger.warning("announcement %d: taken over by another job", announcement.id)
        connection.close()
        return  # the job that holds it now finishes it
    store.finish(connection, announcement.id, failure=stopped)
    done = store.get(connection, announcement.id)
    if done is not None:
        audit_store.add(
            connection,
            operator=announcement.operator,
            action="announcement.delivered",
            target=f"announcement {announcement.id}",
            ok=not (done.failed or stopped),
            detail=f"{done.sent} delivered, {done.failed} failed"
            + (f"; {stopped}" if stopped else ""),
        )
    leases.release(connection, lease, holder=holder)
    connection.close()


def _batches(items: Iterator[tuple[str, str]], size: int) -> Iterator[list[tuple[str, str]]]:
    batch: list[tuple[str, str]] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def start(announcement: store.Announcement) -> threading.Thread:
    """Deliver (or go on delivering) `announcement` in a daemon thread; in a request or app
    context (the Synapse client and the skipped accounts come from the app's config)."""
    server_name = current_app.config["SERVER_NAME_MATRIX"]
    notices_localpart = current_app.config.get("SERVER_NOTICES_LOCALPART", "annonces")
    job = {
        "database": current_app.config["DATABASE"],
        "synapse": client(),
        "announcement": announcement,
        # Never announced to: the console's service account and the notices' sender, which
        # are not people.
        "skip": frozenset(
            f"@{localpart}:{server_name}" for localpart in (SERVICE_LOCALPART, notices_localpart)
        ),
        # Each job its own holder: a second job in the same process must not renew the first's.
        "holder": f"{leases.HOLDER}:{uuid.uuid4().hex[:8]}",
    }
    thread = threading.Thread(target=deliver, kwargs=job, name="announcement", daemon=True)
    thread.start()
    return thread


def resume_interrupted(app: Flask) -> list[threading.Thread]:
    """Start a job for every running announcement whose lease has expired (its job died with
    its process); a live job's lease makes the new one return at once."""
    with app.app_context():
        connection = db.connect(app.config["DATABASE"])
        try:
            pending = store.running(connection)
            expired = [a for a in pending if not leases.held(connection, _lease(a.id), time.time())]
        finally:
            connection.close()
        return [start(announcement) for announcement in expired]
