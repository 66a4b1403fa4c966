# SPDX-License-Identifier: AGPL-3.0-or-later
"""The console's policy values on names and passwords, each defined here and nowhere else.

Forms, validators and the messages that state a rule read them from here, so a rule and what
the page says about it cannot drift apart. Limits with their own logic stay beside it, once:
login lockout in `lockout`, login lifetime in `session_limits`.
"""

from __future__ import annotations

# Console operators (not Matrix users).
OPERATOR_USERNAME_MIN_LENGTH = 2
OPERATOR_USERNAME_MAX_LENGTH = 64
OPERATOR_PASSWORD_MIN_LENGTH = 12

# Any password typed into the console: werkzeug's scrypt and Synapse's bcrypt need no more.
PASSWORD_MAX_LENGTH = 256

# A password the console gives a Matrix user (reactivation). Synapse's Admin API does not apply
# password_config.policy to it, so the console applies the same rules; tests check this value
# against the rendered homeserver.yaml (templates/synapse/homeserver.yaml.j2).
MATRIX_PASSWORD_MIN_LENGTH = 10
