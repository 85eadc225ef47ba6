"""Where a run computes: the CLI's ``--executor local|dask``, ``--scheduler``, ``--workers``
(docs/distributed.md), checked before anything is loaded, and the executor it opens."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from harness.errors import UsageError
from harness.executor import Executor

EXECUTORS = ("local", "dask")
# A Dask address: an optional protocol, a host (name, IPv4 or [IPv6]) and a port.
_ADDRESS = re.compile(
    r"^(?:(?:tcp|tls|ws|wss|ucx|inproc)://)?(?:[\w.-]+|\[[0-9a-fA-F:]+\]):\d{1,5}$"
)


@dataclass(frozen=True)
class ExecutorChoice:
    """Where a run computes (the CLI's ``--executor``, ``--scheduler``, ``--workers``)."""

    kind: str = "local"
    scheduler: str | None = None
    workers: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in EXECUTORS:
            raise UsageError(f"--executor {self.kind}: use one of {', '.join(EXECUTORS)}")
        if self.kind == "local":
            if self.scheduler is not None or self.workers is not None:
                flag = "--scheduler" if self.scheduler is not None else "--workers"
                raise UsageError(f"{flag} needs --executor dask (the local executor has neither)")
            return
        if (self.scheduler is None) == (self.workers is None):
            raise UsageError(
                "--executor dask needs exactly one of --scheduler ADDRESS (a running cluster) "
                "and --workers N (a local cluster of N processes)"
            )
        if self.workers is not None and self.workers < 1:
            raise UsageError(f"--workers {self.workers}: must be at least 1")
        if self.scheduler is not None and not _ADDRESS.match(self.scheduler):
            raise UsageError(
                f"--scheduler {self.scheduler}: not a Dask scheduler address; give "
                "[PROTOCOL://]HOST:PORT, e.g. tcp://10.0.0.5:8786"
            )

    @classmethod
    def from_args(cls, args: Any) -> ExecutorChoice:
        """The choice parsed options make (absent options: the local executor)."""
        return cls(
            getattr(args, "executor", None) or "local",
            getattr(args, "scheduler", None),
            getattr(args, "workers", None),
        )

    @contextmanager
    def open(self, package: Any, device: str) -> Iterator[Executor | None]:
        """The executor for a run of ``package`` (None: the runner's local default)."""
        if self.kind == "local":
            yield None
            return
        from harness.dask_executor import dask_executor

        with dask_executor(
            package, device, scheduler=self.scheduler, workers=self.workers
        ) as executor:
            yield executor
