# SPDX-License-Identifier: AGPL-3.0-or-later
"""Console operators: the sysadmins who log in (not Matrix users). Store, forms and page."""

from admin_console.operators.store import (
    FIRST_OPERATOR,
    LastOperator,
    Operator,
    authenticate,
    by_id,
    create,
    ensure_first_operator,
    exists,
    first_operator_file_names,
    list_all,
    retire_first_operator_file,
    set_password,
)

__all__ = [
    "FIRST_OPERATOR",
    "LastOperator",
    "Operator",
    "authenticate",
    "by_id",
    "create",
    "ensure_first_operator",
    "exists",
    "first_operator_file_names",
    "list_all",
    "retire_first_operator_file",
    "set_password",
]
