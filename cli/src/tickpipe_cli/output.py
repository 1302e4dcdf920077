"""The CLI's consoles: results on stdout, problems on stderr.

Lines are never wrapped (they are copied into scripts and logs), and tables get 120 columns when
the output is not a terminal (rich's default of 80 truncates the coverage tables in pipes).
"""

from __future__ import annotations

import sys

from rich.console import Console


def _width(stream: object) -> int | None:
    return None if getattr(stream, "isatty", lambda: False)() else 120


console = Console(soft_wrap=True, width=_width(sys.stdout))
err = Console(stderr=True, soft_wrap=True, width=_width(sys.stderr))
