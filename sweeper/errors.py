"""The errors the engine raises for bad input: one message naming the file, the key and what was expected."""


class SpecError(ValueError):
    """A spec that cannot run. `where` is "file:line" (or the override), `key` the dotted key."""

    def __init__(self, message: str, where: str | None = None, key: str | None = None):
        self.where, self.key, self.detail = where, key, message
        prefix = ": ".join(p for p in (where, key) if p)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class ClusterError(ConnectionError):
    """The Ray cluster at an address cannot be joined: nothing listens there, the host is unreachable, or it
    refuses this driver's credentials. The message names the address and what to set."""


class LockError(RuntimeError):
    """Another sweep is writing into the same sweep directory."""


class SweepFailed(RuntimeError):
    """Every run of a sweep failed with the same infrastructure error (a worker, node or owner died): the
    sweep itself did not work. The results are saved; the message names the error and its likely cause."""


class OutputFailed(SweepFailed):
    """The sweep directory could not be written (a full disk, a quota, a lost mount): the sweep stopped at the
    first failed write; the message names the path, the cause and how many runs are saved."""


class Stopped(KeyboardInterrupt):
    """The driver was asked to stop by a signal (SIGTERM from scancel, SIGUSR1 before a time limit): it saves
    what finished and exits like an interrupt, with status 128 + the signal's number."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
