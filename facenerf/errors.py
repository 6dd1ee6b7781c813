"""User-facing errors and the wrapper every command-line script runs its ``main`` in.

A :class:`FaceNerfError` carries one line that names the problem and the fix. Scripts call
``run_cli(main)`` so that such an error reaches the user as ``error: <message>`` on stderr
with exit status 2, never as a traceback. Programming errors still raise normally.
"""

from __future__ import annotations

import sys
from typing import Callable, NoReturn

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


class FaceNerfError(Exception):
    """An error the user can fix (bad path, bad config key, unreadable image, ...).

    The message must be a single line naming the problem and how to fix it.
    """


def run_cli(main: Callable[[], int | None]) -> NoReturn:
    """Run ``main`` and exit: 0 (or ``main``'s int) on success, 2 on :class:`FaceNerfError`.

    ``KeyboardInterrupt`` exits with 130 after a one-line notice; long jobs save their own
    checkpoint before re-raising it.
    """
    try:
        status = main()
    except FaceNerfError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(int(status or 0))
