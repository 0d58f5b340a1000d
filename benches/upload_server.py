#!/usr/bin/env python3
"""A local stand-in for the Djinn API, for benches/upload.sh only (the contract-checking fake
lives in the test crate, tests/support/djinn.rs). A sink fast enough not to be what the
benchmark measures: it keeps nothing, but checks every byte it receives.

  GET  /images            -> 200 []            (kiln's name check finds nothing)
  POST /images?name=...   -> reads exactly Content-Length bytes with recv_into into one reused
                             buffer, compares them with REFERENCE (the file being uploaded),
                             answers 201 with the image as JSON; 400 if the body does not
                             start with the qcow2 magic or differs from REFERENCE.
  Anything without `Authorization: Bearer TOKEN` -> 401.

Each POST appends one line to OUT_DIR/uploads.log: `RECEIVED EXPECTED ok`, or
`RECEIVED EXPECTED MISMATCH in the block at OFFSET` (the benchmark checks it after every
upload).

Why a whole-file comparison and how it stays cheap: REFERENCE is mapped once at start-up
(MAP_POPULATE, so no page faults while an upload runs) and every received block is compared
with `bytearray == memoryview`, which CPython does with one memcmp (a memoryview on the left
compares byte by byte, 40x slower; zlib.crc32 runs at ~0.75 GB/s here, slower than the
upload). Measured: the comparison costs no server CPU beyond noise (0.5-0.7 s per 2 GiB with
or without it, nearly all of it the kernel's copy out of the socket).

Usage: upload_server.py PORT OUT_DIR TOKEN REFERENCE
"""

import json
import mmap
import os
import socket
import sys
import threading

PORT, OUT_DIR, TOKEN, REFERENCE = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
# Received blocks are compared as they fill; 512 KiB used a little less server CPU than 4 MiB
# (the block is still in cache when it is compared).
BLOCK = 512 << 10
MAGIC = b"QFI\xfb"
MAX_HEAD = 64 << 10

with open(REFERENCE, "rb") as f:
    REF_SIZE = os.fstat(f.fileno()).st_size
    REF = memoryview(
        mmap.mmap(f.fileno(), 0, flags=mmap.MAP_SHARED | mmap.MAP_POPULATE, prot=mmap.PROT_READ)
    )
lock = threading.Lock()
next_id = [0]


class Done(Exception):
    """The connection is to be closed."""


def reply(conn, status, body, close=False):
    data = json.dumps(body).encode()
    head = f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n"
    if close:
        head += "Connection: close\r\n"
    conn.sendall(head.encode() + b"\r\n" + data)
    if close:
        raise Done


def read_head(conn, pending):
    """The request line and headers (lower-case names), and the bytes after them."""
    while b"\r\n\r\n" not in pending:
        if len(pending) > MAX_HEAD:
            raise Done
        chunk = conn.recv(MAX_HEAD)
        if not chunk:
            raise Done
        pending += chunk
    head, _, rest = bytes(pending).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return method, target.split("?")[0], headers, rest


def receive(conn, length, rest):
    """Read a body of `length` bytes (`rest` is its start, read with the head): its first four
    bytes and the offset of the first block that differs from REFERENCE (None if none does).
    Raises Done if the client stops sending."""
    buffer = bytearray(BLOCK)
    view = memoryview(buffer)
    got = 0
    magic = b""
    mismatch = None
    while got < length:
        want = min(BLOCK, length - got)
        filled = min(len(rest), want)
        view[:filled] = rest[:filled]
        rest = rest[filled:]
        while filled < want:
            n = conn.recv_into(view[filled:want])
            if not n:
                raise Done
            filled += n
        if got == 0:
            magic = bytes(view[:4])
        if mismatch is None:
            if got + filled > REF_SIZE:
                mismatch = got
            else:
                # bytearray == memoryview: one memcmp. Only the last block needs a slice (a copy).
                block = buffer if filled == BLOCK else buffer[:filled]
                if block != REF[got : got + filled]:
                    mismatch = got
        got += filled
    return magic, mismatch


def upload(conn, headers, rest):
    if "content-length" not in headers or "transfer-encoding" in headers:
        reply(conn, "411 Length Required", {"message": "Content-Length required"}, close=True)
    length = int(headers["content-length"])
    if headers.get("expect", "").lower() == "100-continue":  # curl -T asks first
        conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
    magic, mismatch = receive(conn, length, rest)
    if mismatch is None and length != REF_SIZE:
        mismatch = min(length, REF_SIZE)
    with open(os.path.join(OUT_DIR, "uploads.log"), "a") as log:
        verdict = "ok" if mismatch is None else f"MISMATCH in the block at {mismatch}"
        log.write(f"{length} {REF_SIZE} {verdict}\n")
    if magic != MAGIC:
        return reply(conn, "400 Bad Request", {"file": ["not a valid QCOW2 file format"]})
    if mismatch is not None:
        return reply(conn, "400 Bad Request", {"file": [f"differs from {REFERENCE} in the block at byte {mismatch}"]})
    with lock:
        next_id[0] += 1
        image_id = next_id[0]
    url = f"http://127.0.0.1:{PORT}/images/{image_id}"
    reply(conn, "201 Created", {"id": image_id, "name": "bench", "url": url, "driver": "qemu"})


def serve(conn):
    pending = b""
    try:
        while True:
            method, path, headers, rest = read_head(conn, pending)
            pending = b""
            if headers.get("authorization") != f"Bearer {TOKEN}":
                reply(conn, "401 Unauthorized", {"message": "invalid token"}, close=True)
            if method == "GET" and path == "/images":
                pending = rest
                reply(conn, "200 OK", [])
            elif method == "POST" and path == "/images":
                upload(conn, headers, rest)
            else:
                reply(conn, "404 Not Found", {"message": "not found"}, close=True)
    except (Done, ConnectionError):
        pass
    finally:
        conn.close()


server = socket.create_server(("127.0.0.1", PORT))
while True:
    connection, _ = server.accept()
    threading.Thread(target=serve, args=(connection,), daemon=True).start()
