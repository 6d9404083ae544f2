"""A stand-in app build for infra/tests/rollout.rs: passes every check `infra rollout` makes
before traffic (health, server-info, users created/read/deleted, JSON errors, labelled
answers), but answers 500 on GET /api/stats, so only the watch after the switch can catch it."""

import json
import os
import re
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SERVER_ID = os.environ["APP__APPLICATION__SERVER_ID"]
PORT = int(os.environ["APP__APPLICATION__PORT"])
HOST = os.environ.get("APP__APPLICATION__HOST", "127.0.0.1")
USERS = {}
USER_PATH = re.compile(r"^/api/users/([^/]+)$")


def error(status, code):
    return status, {"error": {"code": code, "message": code}}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, body):
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("X-Server-Id", SERVER_ID)
        self.send_header("X-Request-Id", self.headers.get("X-Request-Id") or uuid.uuid4().hex)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        path = self.path.split("?")[0]
        if path == "/health":
            return self.answer(200, {"status": "ok"})
        if path == "/server-info":
            return self.answer(200, {"server_id": SERVER_ID})
        if path == "/api/stats":
            return self.answer(*error(500, "internal"))
        m = USER_PATH.match(path)
        if m:
            try:
                uuid.UUID(m.group(1))
            except ValueError:
                return self.answer(*error(400, "invalid_id"))
            user = USERS.get(m.group(1))
            return self.answer(200, {"user": user}) if user else self.answer(*error(404, "not_found"))
        return self.answer(*error(404, "not_found"))

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        if self.path != "/api/users":
            return self.answer(*error(404, "not_found"))
        user = {"id": str(uuid.uuid4()), "name": body.get("name"), "email": body.get("email")}
        USERS[user["id"]] = user
        return self.answer(201, {"user": user})

    def do_DELETE(self):
        m = USER_PATH.match(self.path)
        if m and USERS.pop(m.group(1), None):
            return self.answer(204, None)
        if self.path == "/api/stats":
            return self.answer(*error(405, "method_not_allowed"))
        return self.answer(*error(404, "not_found"))


ThreadingHTTPServer((HOST, PORT), Handler).serve_forever()
