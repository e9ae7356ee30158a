"""One clear line for bad input.

Every check that a user can fail raises `UserError("what is wrong: how to fix it")`.
Command-line entry points wrap their `main` in `cli` so the user sees that one line on
stderr and a non-zero exit code instead of a traceback wall.
"""
from __future__ import annotations

import errno
import functools
import sys


class UserError(Exception):
    """A problem the user can fix. The message names the problem and the fix."""


class BudgetExceeded(UserError):
    """Spending more would cross a hard cap in budgets.yaml."""


EXIT_USER_ERROR = 2


def cli(main):
    """Decorate a CLI `main()`: UserError -> `error: <message>` on stderr, exit 2."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            raise SystemExit(EXIT_USER_ERROR) from None
        except OSError as e:
            where = f" writing {e.filename}" if e.filename else ""
            if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                print(f"error: disk full{where} ({e.strerror}): free space, then re-run the same command to resume",
                      file=sys.stderr)
            elif e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):  # a place the user chose, read-only
                print(f"error: cannot write{where or ' a file'} ({e.strerror}): make it writable or choose another "
                      "place, then re-run the same command", file=sys.stderr)
            else:
                raise
            raise SystemExit(EXIT_USER_ERROR) from None
        except KeyboardInterrupt:
            print("interrupted: finished work is on disk; re-run the same command to resume", file=sys.stderr)
            raise SystemExit(130) from None

    return wrapper
