"""Per-account named counters: plinth's counters plugin in Python.

    GET    /v1/py/counters          the caller's counters, by name
    GET    /v1/py/counters/{name}   one counter (0 until first counted)
    POST   /v1/py/counters/{name}   add `by` (JSON body, 1 to 1000; none: 1)
    DELETE /v1/py/counters/{name}   forget it

Counters live in kv under `c/{account}/{name}` as decimal text; an
increment is a compare-and-swap retried a few times, so two at once both
count. Failures answer in the platform's error shape,
{"error": {"code", "message", "trace_id", "field"?}}.
"""

import json
import re

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import kv
from wit_world.imports.types import Request, Response

NAME = re.compile(r"[a-z0-9_-]{1,64}")
MAX_STEP = 1000
SWAP_ATTEMPTS = 8


class Problem(Exception):
    """A failure the client is told of."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field


def respond(status: int, value) -> Response:
    response = Response(status)
    response.set_header("content-type", "application/json")
    response.set_body(json.dumps(value, separators=(",", ":")).encode())
    return response


def answer(req: Request, problem: Problem) -> Response:
    error = {"code": problem.code, "message": problem.message, "trace_id": req.trace_id()}
    if problem.field:
        error["field"] = problem.field
    return respond(problem.status, {"error": error})


def storage(call, *args):
    """Runs a kv call, turning its error variant into a Problem."""
    try:
        return call(*args)
    except Err as e:
        if isinstance(e.value, kv.Error_QuotaExceeded):
            raise Problem(507, "quota_exceeded", "the counters namespace is full")
        raise Problem(503, "storage_unavailable", "storage is unavailable; try again")


def account(req: Request) -> str:
    principal = req.principal()
    if principal is None:
        raise Problem(401, "unauthenticated", "sign in to keep counters")
    return principal.account_id


def counter_name(req: Request) -> str:
    name = req.param("name") or ""
    if not NAME.fullmatch(name):
        raise Problem(400, "invalid_name", "a counter name is 1 to 64 of a-z, 0-9, `-` and `_`", "name")
    return name


def not_json(constant: str):
    """`NaN` and `Infinity` are not JSON, though Python's parser takes them."""
    raise ValueError(f"{constant} is not JSON")


def step(req: Request) -> int:
    """How much to add: the body's `by`, or 1 without a body."""
    body = req.body()
    if not body:
        return 1
    kind = (req.header("content-type") or "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise Problem(415, "unsupported_media_type", "send the body as application/json")
    try:
        value = json.loads(body, parse_constant=not_json)
    except (ValueError, RecursionError):
        raise Problem(400, "invalid_json", "the body is not valid JSON (or nested too deeply)")
    if not isinstance(value, dict):
        raise Problem(422, "invalid_field", 'the body is a JSON object such as {"by": 2}')
    by = value.get("by", 1)
    if type(by) is float and by.is_integer():
        by = int(by)  # JSON has one kind of number: 2.0 is 2, as in JavaScript
    if type(by) is not int or not 1 <= by <= MAX_STEP:
        raise Problem(422, "invalid_field", f"`by` is a whole number from 1 to {MAX_STEP}", "by")
    return by


def read(stored: bytes | None) -> int:
    return 0 if stored is None else int(stored.decode())


def listing(req: Request) -> Response:
    prefix = f"c/{account(req)}/"
    counters, after = [], None
    while True:
        page = storage(kv.scan_prefix, prefix, after, 1000)
        counters += [{"name": e.key[len(prefix):], "value": read(e.value)} for e in page.entries]
        after = page.next
        if after is None:
            return respond(200, {"counters": counters})


def count(req: Request, key: str, name: str) -> Response:
    by = step(req)
    for _ in range(SWAP_ATTEMPTS):
        current = storage(kv.get, key)
        value = read(current) + by
        if isinstance(storage(kv.compare_and_swap, key, current, str(value).encode()), kv.Swap_Swapped):
            return respond(200, {"name": name, "value": value})
    raise Problem(409, "conflict", "the counter changed too often to count; try again")


def serve(req: Request) -> Response:
    if req.route() == "GET /v1/py/counters":
        return listing(req)
    name = counter_name(req)
    key = f"c/{account(req)}/{name}"
    method = req.method()
    if method == "GET":
        return respond(200, {"name": name, "value": read(storage(kv.get, key))})
    if method == "POST":
        return count(req, key, name)
    storage(kv.delete, key)
    return Response(204)


class Handler(exports.Handler):
    def routes(self) -> list[str]:
        return ["GET /v1/py/counters", "GET,POST,DELETE /v1/py/counters/{name}"]

    def handle(self, req: Request) -> Response:
        try:
            return serve(req)
        except Problem as problem:
            return answer(req, problem)
