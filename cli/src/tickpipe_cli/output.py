"""The CLI's consoles: results on stdout, problems on stderr.

Lines are never wrapped (they are copied into scripts and logs), and tables get ``COLUMNS`` (or
160) columns when the output is not a terminal (rich's default of 80 truncates the coverage
tables in pipes).
"""

from __future__ import annotations

import os
import sys

from rich.console import Console


def _width(stream: object) -> int | None:
    if getattr(stream, "isatty", lambda: False)():
        return None
    columns = os.environ.get("COLUMNS", "")
    return int(columns) if columns.isdigit() and int(columns) >= 40 else 160


console = Console(soft_wrap=True, width=_width(sys.stdout))
err = Console(stderr=True, soft_wrap=True, width=_width(sys.stderr))
