#!/usr/bin/env python3
"""A local stand-in for the Djinn API, for benches/upload.sh only (the contract-checking fake
lives in the test crate, tests/support/djinn.rs).

  GET  /images            -> 200 []            (kiln's name check finds nothing)
  POST /images?name=...   -> streams the body to OUT_DIR/upload.qcow2 in 1 MiB blocks,
                             checks the qcow2 magic, answers 201 with the image as JSON.

Usage: upload_server.py PORT OUT_DIR TOKEN
"""

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, OUT_DIR, TOKEN = int(sys.argv[1]), sys.argv[2], sys.argv[3]
BLOCK = 1 << 20
MAGIC = b"QFI\xfb"
next_id = [0]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def authorized(self):
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self.close_connection = True
            self.reply(401, {"message": "invalid token"})
            return False
        return True

    def do_GET(self):
        if not self.authorized():
            return
        if self.path.split("?")[0] == "/images":
            self.reply(200, [])
        else:
            self.reply(404, {"message": "not found"})

    def do_POST(self):
        if self.path.split("?")[0] != "/images":
            self.close_connection = True
            return self.reply(404, {"message": "not found"})
        if not self.authorized():
            return
        length = self.headers.get("Content-Length")
        if length is None:
            self.close_connection = True
            return self.reply(411, {"message": "Content-Length required"})
        left = int(length)
        path = os.path.join(OUT_DIR, "upload.qcow2")
        buffer = bytearray(BLOCK)
        view = memoryview(buffer)
        head = b""
        with open(path, "wb") as out:
            while left > 0:
                n = self.rfile.readinto(view[: min(BLOCK, left)])
                if not n:
                    self.close_connection = True
                    return
                if len(head) < 4:
                    head += bytes(view[: 4 - len(head)])
                out.write(view[:n])
                left -= n
        if head[:4] != MAGIC:
            return self.reply(400, {"file": ["not a valid QCOW2 file format"]})
        next_id[0] += 1
        image_id = next_id[0]
        url = f"http://127.0.0.1:{PORT}/images/{image_id}"
        self.reply(201, {"id": image_id, "name": "bench", "url": url, "driver": "qemu"})


ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
