"""User-facing errors and the wrapper every command-line script runs its ``main`` in.

A :class:`FaceNerfError` carries one line that names the problem and the fix. Scripts call
``run_cli(main)`` so that such an error reaches the user as ``error: <message>`` on stderr
with exit status 2, never as a traceback. Programming errors still raise normally.
"""

from __future__ import annotations

import errno
import sys
from typing import Callable, NoReturn

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


class FaceNerfError(Exception):
    """An error the user can fix (bad path, bad config key, unreadable image, ...).

    The message must be a single line naming the problem and how to fix it.
    """


class OutputError(FaceNerfError):
    """An output could not be written: full disk, read-only or vanished folder, no permission.

    Raised by the writers in :mod:`facenerf.io`. Batch jobs do not report it per item and go on
    (every later item would fail the same way): they stop, save what they can, and the command
    ends with this one line.
    """


# errno values that describe the machine, not the program: a full disk, a read-only or vanished
# folder, missing permissions. run_cli turns such an OSError into one line as a last resort.
ENVIRONMENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM,
                                errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EIO})


def run_cli(main: Callable[[], int | None]) -> NoReturn:
    """Run ``main`` and exit: 0 (or ``main``'s int) on success, 2 on :class:`FaceNerfError`.

    ``KeyboardInterrupt`` exits with 130 after a one-line notice; long jobs save their own
    checkpoint before re-raising it. An ``OSError`` caused by the environment (see
    :data:`ENVIRONMENT_ERRNOS`) that escaped the writers of :mod:`facenerf.io` also ends in one
    line; any other exception is a bug and keeps its traceback.
    """
    try:
        status = main()
    except FaceNerfError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except OSError as err:
        if err.errno not in ENVIRONMENT_ERRNOS:
            raise
        where = f" {err.filename}" if err.filename else ""
        print(f"error: cannot access{where}: {err.strerror or err}; check the disk and the folder's "
              "permissions", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    sys.exit(int(status or 0))
