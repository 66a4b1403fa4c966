# SPDX-License-Identifier: AGPL-3.0-or-later
"""When an account's renewal mails, expiry and deactivation fall due: pure rules, no Synapse.

Times are milliseconds since the epoch.  An account's state is its expiry and how many of the
renewal mails of the current period went out (``reminders_sent``; a renewal starts a new
period at 0).  Reminders are given longest first (28 days, 7 days, 1 day before expiry).
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.synapse_module.accounts.validity_config import ValidityConfig

MS = 1000


@dataclass(frozen=True)
class Schedule:
    config: ValidityConfig

    def expiry_from(self, now_ms: int) -> int:
        """The expiry of an account registered or renewed at now_ms."""
        return now_ms + self.config.period_seconds * MS

    def reminders_due(self, expiration_ms: int, now_ms: int) -> int:
        """How many reminders should have gone out by now (an expired account: all)."""
        left_ms = expiration_ms - now_ms
        return sum(1 for before in self.config.reminders_seconds if left_ms <= before * MS)

    def deactivation_ms(self, expiration_ms: int) -> int | None:
        """When an account that expires then is deactivated; None: never."""
        after = self.config.deactivate_after_seconds
        return None if after is None else expiration_ms + after * MS

    def link_expiry_ms(self, expiration_ms: int) -> int:
        """Until when a renewal link mailed for this expiry works: until the account is
        deactivated, or, if it never is, as long after expiry as the first reminder came
        before it (a person back from a long leave can still renew)."""
        deactivation = self.deactivation_ms(expiration_ms)
        if deactivation is not None:
            return deactivation
        longest = max(self.config.reminders_seconds, default=self.config.period_seconds)
        return expiration_ms + longest * MS
