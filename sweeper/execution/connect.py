"""Joining a Ray cluster at an address: first a quick probe (TCP, then one authenticated call to the cluster's
GCS), so that nothing listening, an unreachable host or a refused auth token is one line within seconds
instead of Ray's minute of retries and a traceback."""
from __future__ import annotations

import contextlib
import os
import socket
import threading

from sweeper.errors import ClusterError

PROBE_S = 10.0  # each of the two probes; a healthy head answers in well under a second

AUTH_HELP = ("this cluster uses Ray's token authentication: set RAY_AUTH_MODE=token and give its token as "
             "RAY_AUTH_TOKEN, in a file named by RAY_AUTH_TOKEN_PATH, or in ~/.ray/auth_token (on the head node "
             "`ray get-auth-token` prints it)")


def host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of a GCS address ("auto" resolved to this machine's running cluster), None for "local", a
    Ray Client address (ray://) or an address Ray resolves itself."""
    if address in ("local", None) or address.startswith("ray://"):
        return None
    if address == "auto":
        from ray._private.authentication.authentication_token_setup import \
            maybe_enable_token_auth_if_token_available  # checked against Ray 2.60, as the two below
        from ray._private.services import canonicalize_bootstrap_address

        maybe_enable_token_auth_if_token_available(warn_if_disabled=False)  # what ray.init does for "auto"

        try:
            address = canonicalize_bootstrap_address("auto")
        except ConnectionError:
            address = None
        if not address:
            raise ClusterError("--address auto: no Ray cluster is running on this machine (start one with `ray "
                               "start --head`, or leave out --address for a Ray of the sweep's own)")
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ClusterError(f"Ray address {address!r} is not HOST:PORT (e.g. 10.0.0.5:6379), auto or ray://HOST:PORT")
    return host.strip("[]"), int(port)


def probe(address: str, timeout: float = PROBE_S) -> None:
    """A ClusterError naming the address and what to do when the cluster there cannot be joined."""
    where = host_port(address)
    if where is None:
        return
    host, port = where
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        why = "timed out" if isinstance(e, (socket.timeout, TimeoutError)) else (e.strerror or str(e)).lower()
        raise ClusterError(f"no Ray cluster answers at {host}:{port} ({why} after {timeout:g} s at most): check "
                           "the address (--address or RAY_ADDRESS) and that `ray start --head` runs there") from None
    problem = _gcs_problem(f"{host}:{port}", timeout)
    if problem:
        raise ClusterError(f"cannot join the Ray cluster at {host}:{port}: {problem}")


@contextlib.contextmanager
def _quiet_stderr():
    """File descriptor 2 to /dev/null for the probe (native code writes there, below Python's sys.stderr)."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _gcs_problem(address: str, timeout: float) -> str | None:
    """Why one call to the GCS at `address` fails (None if it answers), in a thread so that it gives up in time."""
    box: dict = {}

    def call():
        try:
            from ray._raylet import GcsClient  # checked against Ray 2.60

            GcsClient(address=address).internal_kv_get(b"session_name", b"session", timeout=timeout)
        except Exception as e:  # noqa: BLE001 - each kind becomes its one line below
            box["error"] = e

    worker = threading.Thread(target=call, daemon=True)
    with _quiet_stderr():  # Ray's C++ client logs each failed attempt; the one line below says it all
        worker.start()
        worker.join(timeout + 5)
    if worker.is_alive():
        return f"it did not answer within {timeout + 5:g} s (is it a Ray head's GCS port?)"
    error = box.get("error")
    if error is None:
        return None
    if type(error).__name__ == "AuthenticationError" or "InvalidAuthToken" in str(error):
        told = os.environ.get("RAY_AUTH_MODE", "").lower() == "token"
        return ("it refused the auth token given (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token is not "
                "the cluster's)" if told else AUTH_HELP)
    return f"not a Ray head, or not answering as one ({type(error).__name__}: {str(error).splitlines()[0][:200]})"
