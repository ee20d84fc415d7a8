"""A policy in Python, against sdk/wit/policy.wit with no SDK, for the
router's tests: the Request-URI's user part picks what it does.

  loop     never returns (the deadline stops it)
  bomb     allocates until the memory limit stops it
  exit     calls sys.exit (a fault)
  sandbox  rejects 403 saying what a file, a socket, the environment and the
           arguments gave it, after printing a line
  entropy  rejects 480 with random bytes and the time it sees
  std      the router's standard decision (the `standard` import), a
           reject's reason prefixed, a forward given a header
  <user>   a directory user: the standard decision; anyone else: 404
"""

import os
import sys
import time

from wit_world import exports
from wit_world.imports import directory, log, standard, types


def text(req: types.Request, span: types.Span) -> str:
    return req.head[span.start:span.start + span.len]


def reject(code: int, reason: str) -> types.Decision:
    return types.Decision_Reject(types.Reject(code, reason, []))


def attempt(what) -> str:
    try:
        what()
        return "allowed"
    except Exception as e:  # noqa: BLE001 - what failed is the answer
        return type(e).__name__


class Handler(exports.Handler):
    def init(self, config: str) -> None:
        return None

    def route(self, req: types.Request) -> types.Decision:
        uri = text(req, req.request_uri).split(";")[0]
        user = uri[uri.index(":") + 1:uri.index("@")]
        if user == "loop":
            while True:
                pass
        if user == "bomb":
            hoard = []
            while True:
                hoard.append(bytearray(1 << 20))
        if user == "exit":
            sys.exit(3)
        if user == "sandbox":
            print("hello from the python sandbox")
            file = attempt(lambda: open("/etc/passwd").read())
            sock = attempt(lambda: __import__("socket").create_connection(("127.0.0.1", 9), timeout=1))
            return reject(403, f"file={file} socket={sock} env={len(os.environ)} argv={len(sys.argv)}")
        if user == "entropy":
            return reject(480, f"py {os.urandom(8).hex()} {int(time.time())} {time.monotonic_ns()}")
        if user == "std":
            decision = standard.route(req)
            if isinstance(decision, types.Decision_Reject):
                decision.value.reason = f"composed (python): {decision.value.reason}"
            elif isinstance(decision, types.Decision_Forward):
                decision.value.add_headers.append(types.Header("X-Composed", "python"))
            return decision
        found = directory.lookup_user(uri)
        if found is None:
            return reject(404, "Not Found (python)")
        log.log(log.Level.INFO, f"routing {found.sip_address}")
        return types.Decision_Standard()

    def on_failure(self, req: types.Request, failure: types.Failure) -> types.Decision:
        return types.Decision_Standard()
