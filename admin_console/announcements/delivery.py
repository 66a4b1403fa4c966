# SPDX-License-Identifier: AGPL-3.0-or-later
"""The job that delivers one announcement: a thread of the console walking the audience page by
page (the module's user list, keyset pages) and sending each recipient their notice, so the
operator's request returns at once whatever the audience's size; the progress is written to the
announcements table after every recipient.

Every call to Synapse has the client's timeout, and the job gives up after a few recipients in a
row find Synapse unreachable, so it always ends. A few sends run at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from admin_console import db
from admin_console.announcements import store
from admin_console.audit import store as audit_store
from admin_console.synapse_admin import SynapseClient, SynapseRefused, SynapseUnavailable, notices
from admin_console.synapse_admin.user_list import list_user_page

logger = logging.getLogger(__name__)
PAGE_SIZE = 200
MAX_UNAVAILABLE_IN_A_ROW = 5
PARALLEL_SENDS = 4


def recipients(
    synapse: SynapseClient, audience: str, target: str, skip: frozenset[str]
) -> Iterator[str]:
    """The user IDs of the audience: one user, or the active agents (of one email domain)."""
    if audience == "user":
        yield target
        return
    cursor = None
    while True:
        page = list_user_page(synapse, kind="agents", search="", cursor=cursor, limit=PAGE_SIZE)
        for user in page.users:
            if user.user_id in skip:
                continue
            domains = {email.rpartition("@")[2].lower() for email in user.emails}
            if audience == "domain" and target not in domains:
                continue
            yield user.user_id
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


def deliver(
    *,
    database: str,
    synapse: SynapseClient,
    announcement: store.Announcement,
    content: dict,
    skip: frozenset[str],
) -> None:
    """Send to every recipient, counting; then audit the outcome."""
    connection = db.connect(database)
    stopped = ""

    def send_one(user_id: str) -> tuple[str, Exception | None]:
        try:
            notices.send(synapse, user_id, content)
        except (SynapseRefused, SynapseUnavailable) as error:
            return user_id, error
        return user_id, None

    try:
        unavailable = 0
        audience = recipients(synapse, announcement.audience, announcement.target, skip)
        # A few sends at once (Synapse makes each recipient's notices room on the first one);
        # the counts are written here, in the job's thread, which owns the connection.
        with ThreadPoolExecutor(max_workers=PARALLEL_SENDS) as pool:
            for batch in _batches(audience, PARALLEL_SENDS * 4):
                for user_id, error in pool.map(send_one, batch):
                    failure = None if error is None else f"{user_id}: {error}"
                    store.count_delivery(connection, announcement.id, failure=failure)
                    unavailable = unavailable + 1 if isinstance(error, SynapseUnavailable) else 0
                if unavailable >= MAX_UNAVAILABLE_IN_A_ROW:
                    stopped = "stopped: Synapse unavailable"
                    break
    except (SynapseRefused, SynapseUnavailable) as error:  # listing the audience
        stopped = f"stopped: the recipients cannot be listed ({error})"
    except Exception as error:  # never leave the announcement "running" forever
        logger.exception("announcement %d", announcement.id)
        stopped = f"stopped: {type(error).__name__}"
    finally:
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
        connection.close()


def _batches(items: Iterator[str], size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def start(**job) -> threading.Thread:
    """Run deliver(**job) in a daemon thread."""
    thread = threading.Thread(target=deliver, kwargs=job, name="announcement", daemon=True)
    thread.start()
    return thread
