// Per-account named counters: plinth's counters plugin in JavaScript.
//
//   GET    /v1/js/counters          the caller's counters, by name
//   GET    /v1/js/counters/{name}   one counter (0 until first counted)
//   POST   /v1/js/counters/{name}   add `by` (JSON body, 1 to 1000; none: 1)
//   DELETE /v1/js/counters/{name}   forget it
//
// Counters live in kv under `c/{account}/{name}` as decimal text; an
// increment is a compare-and-swap retried a few times, so two at once
// both count. Failures answer in the platform's error shape,
// {"error": {"code", "message", "trace_id", "field"?}}.

import { Response } from 'plinth:platform/types@0.1.0';
import { get, compareAndSwap, scanPrefix, delete as remove } from 'plinth:platform/kv@0.1.0';

const NAME = /^[a-z0-9_-]{1,64}$/;
const MAX_STEP = 1000;
const SWAP_ATTEMPTS = 8;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A failure the client is told of. */
class Problem extends Error {
  constructor(status, code, message, field) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field;
  }
}

function json(status, value) {
  const response = new Response(status);
  response.setHeader('content-type', 'application/json');
  response.setBody(encoder.encode(JSON.stringify(value)));
  return response;
}

function answer(req, problem) {
  const error = { code: problem.code, message: problem.message, trace_id: req.traceId() };
  if (problem.field) error.field = problem.field;
  return json(problem.status, { error });
}

/** Runs a kv call, turning its error variant into a Problem. */
function storage(call) {
  try {
    return call();
  } catch (e) {
    const error = e && e.payload;
    if (error && error.tag === 'quota-exceeded') {
      throw new Problem(507, 'quota_exceeded', 'the counters namespace is full');
    }
    throw new Problem(503, 'storage_unavailable', 'storage is unavailable; try again');
  }
}

function account(req) {
  const principal = req.principal();
  if (!principal) throw new Problem(401, 'unauthenticated', 'sign in to keep counters');
  return principal.accountId;
}

function counterName(req) {
  const name = req.param('name') ?? '';
  if (!NAME.test(name)) {
    throw new Problem(400, 'invalid_name', 'a counter name is 1 to 64 of a-z, 0-9, `-` and `_`', 'name');
  }
  return name;
}

/** How much to add: the body's `by`, or 1 without a body. */
function step(req) {
  const body = req.body();
  if (body.length === 0) return 1;
  const type = (req.header('content-type') ?? '').split(';')[0].trim().toLowerCase();
  if (type !== 'application/json') {
    throw new Problem(415, 'unsupported_media_type', 'send the body as application/json');
  }
  let value;
  try {
    value = JSON.parse(decoder.decode(body));
  } catch {
    throw new Problem(400, 'invalid_json', 'the body is not valid JSON');
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new Problem(422, 'invalid_field', 'the body is a JSON object such as {"by": 2}');
  }
  const by = 'by' in value ? value.by : 1;
  if (!Number.isInteger(by) || by < 1 || by > MAX_STEP) {
    throw new Problem(422, 'invalid_field', `\`by\` is a whole number from 1 to ${MAX_STEP}`, 'by');
  }
  return by;
}

const read = (bytes) => (bytes === undefined ? 0 : Number(decoder.decode(bytes)));

function list(req) {
  const prefix = `c/${account(req)}/`;
  const counters = [];
  let after;
  do {
    const page = storage(() => scanPrefix(prefix, after, 1000));
    for (const entry of page.entries) {
      counters.push({ name: entry.key.slice(prefix.length), value: read(entry.value) });
    }
    after = page.next;
  } while (after !== undefined);
  return json(200, { counters });
}

function count(req, key, name) {
  const by = step(req);
  for (let attempt = 0; attempt < SWAP_ATTEMPTS; attempt++) {
    const current = storage(() => get(key));
    const value = read(current) + by;
    const outcome = storage(() => compareAndSwap(key, current, encoder.encode(String(value))));
    if (outcome.tag === 'swapped') return json(200, { name, value });
  }
  throw new Problem(409, 'conflict', 'the counter changed too often to count; try again');
}

function handle(req) {
  if (req.route() === 'GET /v1/js/counters') return list(req);
  const name = counterName(req);
  const key = `c/${account(req)}/${name}`;
  switch (req.method()) {
    case 'GET':
      return json(200, { name, value: read(storage(() => get(key))) });
    case 'POST':
      return count(req, key, name);
    default:
      storage(() => remove(key));
      return new Response(204);
  }
}

export const handler = {
  routes() {
    return ['GET /v1/js/counters', 'GET,POST,DELETE /v1/js/counters/{name}'];
  },

  handle(req) {
    try {
      return handle(req);
    } catch (e) {
      if (e instanceof Problem) return answer(req, e);
      throw e;
    }
  },
};
