# SPDX-License-Identifier: AGPL-3.0-or-later
"""CSV exports a spreadsheet opens as plain text: no cell can be read as a formula.

A cell beginning with one of FORMULA_PREFIXES (=, +, -, @, TAB, CR: OWASP's list for CSV
injection) gets a leading apostrophe, which spreadsheets show as text and do not evaluate. The
values come from anyone: a username typed on the login page is in the audit log, a display
name is chosen by its user. Rows are streamed one at a time, so memory stays flat.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def neutralised(value: str) -> str:
    """The value as a cell no spreadsheet evaluates."""
    return "'" + value if value.startswith(FORMULA_PREFIXES) else value


def csv_lines(header: Sequence[str], rows: Iterable[Sequence[str]]) -> Iterator[str]:
    """The header, then one line per row, every cell neutralised."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def line(cells: Sequence[str]) -> str:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow([neutralised(cell) for cell in cells])
        return buffer.getvalue()

    yield line(header)
    for row in rows:
        yield line(row)
