# SPDX-License-Identifier: AGPL-3.0-or-later
"""Password sign-in for externals only, when agents sign in through single sign-on.

With ``auth.password_login: false`` (only allowed with ``auth.oidc``), the rendered
homeserver.yaml turns Synapse's own password check off (``password_config.localdb_enabled:
false``) and this concern registers the only ``m.login.password`` checker
(``auth_checkers``, Synapse 1.163's password auth provider callbacks).  It accepts the local
password of an *external* (an invited guest, who has no account at the administration's
provider and keeps the email flow) and of a server administrator (the console's service
account, made with the registration secret, logs in with its password when its token must be
renewed; an agent cannot make themselves one), and nothing else: an agent's password, even the
right one, gets Synapse's ``403 M_FORBIDDEN`` "Invalid username or password" (Synapse swallows
a checker's own error, so the message cannot be ours; the login flows still offer SSO).

The password is checked before the account's kind, so a refused agent and a wrong password
take the same path.  Synapse's password reset and change need its local password database and
are off for everybody in this mode (``set_password`` refuses them).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from synapse.module_api import ModuleApi

from appliance.synapse_module.synapse_internals import SynapseInternals

logger = logging.getLogger(__name__)

PASSWORD_LOGIN = "m.login.password"

# Whether an account is an external's (externals/policy.py's ExternalDirectory.is_external).
ExternalCheck = Callable[[str], Awaitable[bool]]


class ExternalsOnlyPasswordLogin:
    def __init__(
        self, api: ModuleApi, is_external: ExternalCheck, internals: SynapseInternals
    ) -> None:
        self._api = api
        self._is_external = is_external
        self._internals = internals

    def register(self) -> None:
        self._api.register_password_auth_provider_callbacks(
            auth_checkers={(PASSWORD_LOGIN, ("password",)): self.check_password}
        )

    async def check_password(
        self, username: str, login_type: str, login_dict: dict
    ) -> tuple[str, None] | None:
        """Synapse's ``auth_checkers`` callback for ``m.login.password``.

        Args:
            username: the user ID or localpart the client gave (Synapse has already turned an
                email identifier into the account's ID).
            login_type: ``m.login.password``.
            login_dict: the login body; its ``password``.

        Returns:
            ``(canonical user ID, None)`` for an external's or a server administrator's right
            password; None otherwise
            (Synapse then answers ``403 M_FORBIDDEN``).
        """
        password = login_dict.get("password")
        if login_type != PASSWORD_LOGIN or not isinstance(password, str):
            return None
        user_id = (
            username if username.startswith("@") else self._api.get_qualified_user_id(username)
        )
        canonical = await self._internals.local_password_matches(user_id, password)
        if canonical is None:
            return None
        # Server administrators keep their password: the console's service account logs in
        # with one when its token must be renewed (operations/service_account.py).
        if not await self._is_external(canonical) and not await self._api.is_user_admin(canonical):
            logger.info(
                "refused a password sign-in of agent %s: agents use single sign-on", canonical
            )
            return None
        return canonical, None
