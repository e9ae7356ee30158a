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
            if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise
            where = f" writing {e.filename}" if e.filename else ""
            print(f"error: disk full{where} ({e.strerror}): free space, then re-run the same command to resume",
                  file=sys.stderr)
            raise SystemExit(EXIT_USER_ERROR) from None
        except KeyboardInterrupt:
            print("interrupted: finished work is on disk; re-run the same command to resume", file=sys.stderr)
            raise SystemExit(130) from None

    return wrapper
