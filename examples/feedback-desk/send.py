"""Sends feedback through the forms API, as any client can: shows the form
(which carries a render token and a proof-of-work challenge), solves the
challenge, waits out the form's minimum fill time, and submits.

    python3 send.py BASE_URL TOPIC MESSAGE

Prints the server's answer (202 with the submission's id). Standard library
only.
"""
import base64
import hashlib
import json
import sys
import time
import urllib.request

base, topic, message = sys.argv[1], sys.argv[2], sys.argv[3]


def call(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method,
                                     headers={"content-type": "application/json", "accept": "application/json"})
    with urllib.request.urlopen(request) as response:
        return response.status, json.load(response)


_, shown = call("GET", "/v1/forms/feedback?locale=en")
challenge = shown["proof_of_work"]
number = next(n for n in range(challenge["maxnumber"] + 1)
              if hashlib.sha256(f"{challenge['salt']}{n}".encode()).hexdigest() == challenge["challenge"])
proof = {k: challenge[k] for k in ("algorithm", "challenge", "salt", "signature")} | {"number": number}
time.sleep(shown["min_fill_seconds"])
status, answer = call("POST", "/v1/forms/feedback/submissions", {
    "token": shown["token"],
    "data": {"topic": topic, "message": message},
    "proof": base64.b64encode(json.dumps(proof).encode()).decode(),
})
print(status, json.dumps(answer))
