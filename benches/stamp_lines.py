#!/usr/bin/env python3
# Usage: stamp_lines.py ECHO_RE SRC DST [SRC DST…]  (benches/flow.sh, benches/configure.sh)
#
# Polls SRC files (which may not exist yet) and appends each new line to DST as
# "EPOCH<TAB>text", EPOCH being when the line's first byte was seen. ANSI escapes and \r are
# stripped. Lines of the first SRC matching ECHO_RE are also echoed to stderr (progress).
# A partial line keeps the time of its first byte; if it then sits idle for a second (the
# getty's "login: " prompt has no newline, and the next thing printed after it may come much
# later, e.g. the first line of the shutdown) it is written out as a line of its own, so what
# follows it gets its own, later time.
import os, re, signal, sys, time
echo_re = re.compile(sys.argv[1])
pairs = list(zip(sys.argv[2::2], sys.argv[3::2]))
junk = re.compile(rb"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[=>78cM]|\r")
stopping = False
def stop(*_):
    global stopping
    stopping = True
signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, signal.SIG_IGN)  # the script decides when to stop us
state = {src: {"off": 0, "buf": b"", "t": None, "seen": 0.0, "out": open(dst, "a")}
         for src, dst in pairs}
first = pairs[0][0]
def emit(src, s, raw):
    text = junk.sub(b"", raw).decode("utf-8", "replace")
    s["out"].write("%.6f\t%s\n" % (s["t"], text))
    if src == first and echo_re.search(text):
        sys.stderr.write("  %s\n" % text)
        sys.stderr.flush()
while True:
    last_pass = stopping
    for src, s in state.items():
        try:
            size = os.stat(src).st_size
        except FileNotFoundError:
            continue
        if size < s["off"]:  # truncated: a new QEMU opened the log
            s.update(off=0, buf=b"", t=None)
        if size > s["off"]:
            now = time.time()
            with open(src, "rb") as f:
                f.seek(s["off"])
                data = f.read(size - s["off"])
            s["off"] += len(data)
            if s["buf"] and now - s["seen"] >= 1.0:  # an idle partial line: a prompt
                emit(src, s, s["buf"])
                s["buf"] = b""
            s["seen"] = now
            if not s["buf"]:
                s["t"] = now
            s["buf"] += data
            while b"\n" in s["buf"]:
                line, s["buf"] = s["buf"].split(b"\n", 1)
                emit(src, s, line)
                s["t"] = now
            s["out"].flush()
    if last_pass:
        for src, s in state.items():
            if s["buf"]:
                emit(src, s, s["buf"])
            s["out"].close()
        break
    time.sleep(0.02)
