"""The one exception tree of mammocert.

::

    MammocertError                      exit code attribute says how the CLI ends
    ├── UsageError (ValueError)         2: bad command line, bad input file, bad field
    │   ├── RecipeError                 2: a reference-set recipe is invalid
    │   ├── ManifestError               2: a reference-set manifest is invalid
    │   ├── VendorPackageError          2: a vendor package is invalid or unsafe
    │   ├── StandardError               2: a standard is invalid, or refused in this mode
    │   └── CostModelError              2: a programme cost model is invalid
    ├── VerificationError               1: a set, bundle or signature does not verify
    └── HarnessFault (RuntimeError)     3: the run could not complete

Vendor faults (a model that crashes, times out or returns garbage) are *not* exceptions that
reach the CLI: adapters raise :class:`VendorFault`, the runner records it per exam as data.
Messages are one line: what is wrong, where (file, line, key), and how to fix it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable


class MammocertError(Exception):
    """Root of every error mammocert raises on purpose."""

    exit_code: int = 3


class UsageError(MammocertError, ValueError):
    """Bad usage or bad input; the message names the file/field and the fix."""

    exit_code = 2


class RecipeError(UsageError):
    """A reference-set recipe is invalid."""


class ManifestError(UsageError):
    """A reference-set manifest is invalid."""


class VendorPackageError(UsageError):
    """A vendor package is invalid or unsafe."""


class StandardError(UsageError):
    """A standard is invalid, or may not be used in the requested mode."""


class CostModelError(UsageError):
    """A programme cost model (``mammocert/costs/v1``) is invalid."""


class VerificationError(MammocertError):
    """Something that should verify does not (set digest, bundle, signature)."""

    exit_code = 1


class HarnessFault(MammocertError, RuntimeError):
    """The harness itself could not complete the run."""

    exit_code = 3


class VendorFault(Exception):
    """A vendor model failed on one exam; recorded as data, never shown as a crash.

    ``status`` is ``"rejected"`` when the model (or the harness on its behalf) declined the input,
    ``"error"`` for a technical failure.
    """

    def __init__(self, reason: str, status: str = "error") -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


def run_script(prog: str, body: Callable[[], int]) -> int:
    """Run a script's main body; a MammocertError becomes one line on stderr and its exit code."""
    try:
        return body()
    except MammocertError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
