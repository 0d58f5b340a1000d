#!/usr/bin/env python3
"""Terminal cost of kiln's Screen pane: bytes/s and kiln's CPU with a still guest screen, and
the delay from a guest screen change to its picture on the terminal, per graphics mode.

A benchmark, not a test: it runs the real kiln binary in a pseudo-terminal it owns, drives
the workbench to the Install step on the fixture installer ISO (as tests/install_tui.rs does
through tmux), reads every byte kiln writes (time-stamped), and answers nothing.

    python3 benches/graphics.py [--kiln PATH] [--seconds 20] [--modes sixel,kitty,iterm2,blocks]

Standard library only. See benches/GRAPHICS-NOTES.md for what is measured and why.
"""

import argparse
import errno
import fcntl
import os
import pty
import random
import re
import select
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
import unicodedata

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODES = ("sixel", "kitty", "iterm2", "blocks")

# Terminal geometry: 160 columns is at least kiln's SIDE_BY_SIDE_WIDTH (140), so the console
# and the Screen pane are shown side by side and the screen is visible without `t`; the pixel
# size gives the 10x20 cell kiln's graphics.rs computes from TIOCGWINSZ.
COLS, ROWS, CELL_W, CELL_H = 160, 48, 10, 20
SIDE_BY_SIDE_WIDTH = 140

# Keys as a terminal sends them.
DOWN, ENTER, TAB = b"\x1b[B", b"\r", b"\t"
CTRL_C, CTRL_RBRACKET = b"\x03", b"\x1d"

UI_TIMEOUT = 30  # a workbench screen to appear
SETTLE = 4.0  # after a change, before a still window: kiln screendumps every 250 ms
# Before kiln's QuietBackend a draw that changed nothing still wrote ratatui's colour reset
# and cursor hide, ESC[39m ESC[49m ESC[59m ESC[0m ESC[?25l (25 bytes); a draw this small
# counts as one that changed nothing.
EMPTY_DRAW = 25
BOOT_TIMEOUT = 300  # the installer (TCG) to reach a prompt


def log(message):
    print(f"[graphics {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Failure(Exception):
    pass


# ---------------------------------------------------------------------------------------
# A minimal terminal: enough of xterm to know which text is where (for waiting on the
# workbench's screens), where each picture starts and ends, and which cells of the Screen
# pane each draw rewrote. String sequences (DCS/APC/OSC: sixel, kitty, iTerm2 pictures) are
# skipped with find(), not byte by byte, so reading keeps up with kiln.
# ---------------------------------------------------------------------------------------

PICTURE_KINDS = {"sixel", "kitty", "iterm2"}


class Picture:
    __slots__ = ("kind", "start", "end", "size")

    def __init__(self, kind, start):
        self.kind, self.start, self.end, self.size = kind, start, None, 0


class Frame:
    """One draw of the workbench that sent cells: ratatui ends each with ESC[59m."""

    __slots__ = ("start", "end", "size", "picture_start", "picture_bytes", "pane_cells")

    def __init__(self, start):
        self.start, self.end, self.picture_start = start, None, None
        self.size = self.picture_bytes = self.pane_cells = 0


class Term:
    def __init__(self, cols, rows):
        self.cols, self.rows = cols, rows
        self.grid = [[" "] * cols for _ in range(rows)]
        self.row = self.col = 0
        self.saved = (0, 0)
        self.state = "ground"
        self.buf = b""  # an unfinished escape sequence or UTF-8 character
        self.string_kind = None  # while inside DCS/APC/OSC/PM/SOS
        self.string_head = b""
        self.picture = None
        self.pictures = []
        self.frames = []
        self.frame = None
        self.total = 0  # bytes fed so far
        self.frame_from = 0  # the stream offset where the current draw began
        self.pane = None  # (top, left, bottom, right) inner cells of the Screen pane, inclusive
        self.lock = threading.Lock()

    # -- text ------------------------------------------------------------------------------
    def text(self):
        with self.lock:
            return "\n".join("".join(r) for r in self.grid)

    def _put(self, ch, t):
        if unicodedata.combining(ch) or ch in "\u200b\u200d":
            return
        width = 2 if unicodedata.east_asian_width(ch) in "WF" else 1
        if self.col >= self.cols:
            self.col = self.cols - 1
        if 0 <= self.row < self.rows:
            self.grid[self.row][self.col] = ch
            if width == 2 and self.col + 1 < self.cols:
                self.grid[self.row][self.col + 1] = ""
            p = self.pane
            if p and p[0] <= self.row <= p[2] and p[1] <= self.col <= p[3]:
                self._frame(t).pane_cells += 1
        self.col += width

    def _frame(self, t):
        if self.frame is None:
            self.frame = Frame(t)
        return self.frame

    def _end_frame(self, t, offset):
        frame = self._frame(t)
        frame.end = t
        frame.size = offset - self.frame_from
        self.frame_from = offset
        self.frames.append(frame)
        self.frame = None

    # -- bytes ---------------------------------------------------------------------------
    def feed(self, data, t):
        with self.lock:
            self.base = self.total - len(self.buf)  # the stream offset of data[0] below
            self.total += len(data)
            data = self.buf + data
            self.buf = b""
            i, n = 0, len(data)
            while i < n:
                self._frame(t)
                if self.state == "string":
                    i = self._string(data, i, t)
                    continue
                if self.state == "ground":
                    j = data.find(b"\x1b", i)
                    stop = n if j < 0 else j
                    if stop > i:
                        i = self._text(data, i, stop, t)
                        if i < stop:  # an unfinished UTF-8 character at the end
                            self.buf = data[i:]
                            return
                    if j < 0:
                        return
                    i = j
                # an escape sequence at i
                if i + 1 >= n:
                    self.buf = data[i:]
                    return
                c = data[i + 1]
                if c == ord("["):
                    m = CSI.match(data, i)
                    if not m:
                        if n - i < 64:
                            self.buf = data[i:]
                            return
                        i += 2  # a malformed CSI: drop it
                        continue
                    self._csi(m.group(1), m.group(2), t, self.base + m.end())
                    i = m.end()
                elif c in b"P_]^X":
                    self.state = "string"
                    self.string_kind = chr(c)
                    self.string_head = b""
                    self.picture = None
                    self._string_start = t
                    i += 2
                elif c == ord("7"):
                    self.saved = (self.row, self.col)
                    i += 2
                elif c == ord("8"):
                    self.row, self.col = self.saved
                    i += 2
                elif c in b"()#%":
                    if i + 2 >= n:
                        self.buf = data[i:]
                        return
                    i += 3
                else:
                    i += 2

    def _text(self, data, i, stop, t):
        chunk = data[i:stop]
        try:
            s = chunk.decode("utf-8")
            used = len(chunk)
        except UnicodeDecodeError as e:
            if e.reason == "unexpected end of data":
                s = chunk[: e.start].decode("utf-8", "replace")
                used = e.start
            else:
                s = chunk.decode("utf-8", "replace")
                used = len(chunk)
        for ch in s:
            o = ord(ch)
            if o >= 0x20 and o != 0x7F:
                self._put(ch, t)
            elif ch == "\r":
                self.col = 0
            elif ch == "\n":
                self.row = min(self.row + 1, self.rows - 1)
            elif ch == "\b":
                self.col = max(self.col - 1, 0)
        return i + used

    def _string(self, data, i, t):
        """Inside DCS/APC/OSC: find its end (ST, or BEL for OSC) without looking at each byte."""
        n = len(data)
        if len(self.string_head) < 16:
            self.string_head += data[i : i + 16 - len(self.string_head)]
            if self.picture is None:
                kind = self._picture_kind()
                if kind:
                    self.picture = Picture(kind, self._string_start)
                    self.picture.size = 2  # the introducer
        ends = [e for e in (data.find(b"\x1b\\", i),) if e >= 0]
        if self.string_kind == "]":
            bel = data.find(b"\x07", i)
            if bel >= 0:
                ends.append(bel)
        if not ends:
            # keep a trailing ESC: it may be the first half of ST
            keep = 1 if data.endswith(b"\x1b") else 0
            if self.picture:
                self.picture.size += n - i - keep
            if keep:
                self.buf = b"\x1b"
            return n
        e = min(ends)
        stop = e + (1 if data[e] == 7 else 2)
        if self.picture:
            self.picture.size += stop - i
            self.picture.end = t
            self.pictures.append(self.picture)
            frame = self._frame(t)
            frame.picture_bytes += self.picture.size
            if frame.picture_start is None:
                frame.picture_start = self.picture.start
            self.picture = None
        self.state = "ground"
        return stop

    def _picture_kind(self):
        head = self.string_head
        if self.string_kind == "P" and re.match(rb"[0-9;]*q", head):
            return "sixel"
        if self.string_kind == "_" and head[:1] == b"G":
            return "kitty"
        if self.string_kind == "]" and head.startswith(b"1337;File="):
            return "iterm2"
        return None

    def _csi(self, params, final, t, offset):
        final = final.decode()
        private = params.startswith(b"?")
        nums = []
        for p in params.lstrip(b"?<>=").split(b";"):
            try:
                nums.append(int(p.split(b":")[0] or 0))
            except ValueError:
                nums.append(0)
        a = nums[0] if nums else 0
        if private:
            return
        # ratatui's crossterm backend ends every draw that sent cells with a style reset
        # ending in ESC[59m (underline colour); kiln writes nothing at all for a draw that
        # changed nothing (its QuietBackend), so that reset is where a draw ends.
        if final == "m" and nums == [59]:
            self._end_frame(t, offset)
            return
        if final in "Hf":
            self.row = max(min((a or 1) - 1, self.rows - 1), 0)
            self.col = max(min(((nums[1] if len(nums) > 1 else 0) or 1) - 1, self.cols - 1), 0)
        elif final == "A":
            self.row = max(self.row - (a or 1), 0)
        elif final == "B":
            self.row = min(self.row + (a or 1), self.rows - 1)
        elif final == "C":
            self.col = min(self.col + (a or 1), self.cols - 1)
        elif final == "D":
            self.col = max(self.col - (a or 1), 0)
        elif final == "G":
            self.col = max(min((a or 1) - 1, self.cols - 1), 0)
        elif final == "d":
            self.row = max(min((a or 1) - 1, self.rows - 1), 0)
        elif final == "J" and a == 2:
            self.grid = [[" "] * self.cols for _ in range(self.rows)]
        elif final == "K":
            line = self.grid[self.row]
            lo, hi = {0: (self.col, self.cols), 1: (0, self.col + 1)}.get(a, (0, self.cols))
            for x in range(lo, hi):
                line[x] = " "
        elif final == "X":
            line = self.grid[self.row]
            for x in range(self.col, min(self.col + (a or 1), self.cols)):
                line[x] = " "


CSI = re.compile(rb"\x1b\[([0-9;:?<>=]*)[ -/]*([@-~])")


# ---------------------------------------------------------------------------------------
# kiln in a pseudo-terminal
# ---------------------------------------------------------------------------------------


class Kiln:
    def __init__(self, argv, env, cwd, raw_path=None):
        self.term = Term(COLS, ROWS)
        self.raw = open(raw_path, "wb") if raw_path else None
        self.chunks = []  # (time, length): every read
        pid, fd = pty.fork()
        if pid == 0:  # the child: the pty is its controlling terminal and stdio
            try:
                winsize = struct.pack("HHHH", ROWS, COLS, COLS * CELL_W, ROWS * CELL_H)
                fcntl.ioctl(1, termios.TIOCSWINSZ, winsize)
                os.chdir(cwd)
                os.execve(argv[0], argv, env)
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        self.status = None
        self.wait_lock = threading.Lock()
        self.eof = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        while True:
            try:
                r, _, _ = select.select([self.fd], [], [], 0.5)
                if not r:
                    if self.exited():
                        break
                    continue
                data = os.read(self.fd, 1 << 16)
            except OSError as e:
                if e.errno in (errno.EIO, errno.EBADF):
                    break
                raise
            if not data:
                break
            t = time.monotonic()
            self.chunks.append((t, len(data)))
            if self.raw:
                self.raw.write(struct.pack("<dI", t, len(data)) + data)
            self.term.feed(data, t)
        self.eof.set()

    def exited(self):
        with self.wait_lock:  # the reader thread asks too
            if self.status is None:
                try:
                    pid, status = os.waitpid(self.pid, os.WNOHANG)
                except ChildProcessError:
                    return True
                if pid:
                    self.status = status
            return self.status is not None

    def send(self, data):
        t = time.monotonic()
        try:
            os.write(self.fd, data)
        except OSError as e:  # kiln has gone: its pty is closed
            if not self.exited():
                raise Failure(f"cannot write to kiln's terminal: {e}") from e
        return t

    def type_text(self, text):
        for ch in text:  # one key at a time, as tmux send-keys -l does
            self.send(ch.encode())
            time.sleep(0.01)

    def wait_for(self, needle, timeout, also=None):
        """Wait until `needle` (or a string in `also`) is on screen; the one found."""
        deadline = time.monotonic() + timeout
        needles = [needle] + list(also or [])
        while time.monotonic() < deadline:
            screen = self.term.text()
            for n in needles:
                if n in screen:
                    return n
            if self.eof.is_set():
                raise Failure(f"kiln ended while waiting for {needle!r}:\n{screen}")
            time.sleep(0.02)
        raise Failure(f"no {needle!r} on screen after {timeout} s:\n{self.term.text()}")

    def cpu_seconds(self):
        """kiln's utime + stime, all its threads (not QEMU's: a child's time is counted only
        once it is waited for)."""
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def wait_exit(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.exited():
                return True
            time.sleep(0.1)
        return False

    def kill(self):
        if not self.exited():
            os.kill(self.pid, signal.SIGKILL)
            self.wait_exit(5)

    def close(self):
        self.reader.join(timeout=2)
        try:
            os.close(self.fd)
        except OSError:
            pass
        if self.raw:
            self.raw.close()


def find_pane(term):
    """The inner cells of the Screen pane: the box whose top border carries its title."""
    with term.lock:
        grid = [list(r) for r in term.grid]
    for y, line in enumerate(grid):
        s = "".join(c if c else "" for c in line)
        k = s.find(" Screen (v to type) ")
        if k < 0:
            continue
        # columns: map the string index back to a grid column (wide chars leave "" cells)
        cols = [x for x, c in enumerate(line) if c != ""]
        x = cols[k] if k < len(cols) else k
        left = x
        while left > 0 and grid[y][left] not in "┌╭┏╔":
            left -= 1
        right = x
        while right < term.cols - 1 and grid[y][right] not in "┐╮┓╗":
            right += 1
        bottom = y + 1
        while bottom < term.rows - 1 and grid[bottom][left] not in "└╰┗╚":
            bottom += 1
        return (y + 1, left + 1, bottom - 1, right - 1)
    return None


def qemu_pids(marker):
    """QEMU processes whose command line names `marker` (this run's temp dir)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and b"qemu-system" in os.path.basename(argv[0]) and marker.encode() in b" ".join(argv):
            found.append(int(entry))
    return found


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


# ---------------------------------------------------------------------------------------
# One mode
# ---------------------------------------------------------------------------------------


def run_mode(mode, kiln_bin, iso, seconds, changes, keep):
    tmp = tempfile.mkdtemp(prefix=f"kiln-gfx-{mode}-")
    result = {"mode": mode, "problems": []}
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "TERM": "xterm-256color",
        "LANG": "C.UTF-8",
        "HOME": tmp,
        "XDG_CONFIG_HOME": os.path.join(tmp, "config"),
        "XDG_DATA_HOME": os.path.join(tmp, "data"),
        "XDG_STATE_HOME": os.path.join(tmp, "state"),
        "XDG_CACHE_HOME": os.path.join(tmp, "cache"),
        "XDG_RUNTIME_DIR": os.path.join(tmp, "run"),
    }
    work = os.path.join(tmp, "work")
    for sub in ("config", "data", "state", "cache", "run", "work"):
        os.makedirs(os.path.join(tmp, sub), mode=0o700)
    subprocess.run(
        [kiln_bin, "create", "disk.qcow2", "--size", "4G"],
        cwd=work, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    argv = [kiln_bin, "--graphics", mode, "--memory", "1024", "--cpus", "1"]
    log(f"{mode}: {' '.join(argv)} in {work}")
    kiln = Kiln(argv, env, work, raw_path=os.path.join(tmp, "pty.raw") if keep else None)
    try:
        drive_to_shell(kiln, iso, SerialLog(os.path.join(work, "disk.install.serial.log")))
        measure(kiln, mode, seconds, changes, result)
        quit_kiln(kiln, result)
    except (Failure, KeyboardInterrupt) as e:
        result["problems"].append((str(e) or type(e).__name__).splitlines()[0])
        log(f"{mode}: FAILED: {e!r}")
        kiln.send(CTRL_RBRACKET)  # in case the guest has the keyboard
        time.sleep(0.3)
        kiln.send(CTRL_C)
        if not kiln.wait_exit(60):
            result["problems"].append("kiln did not quit on Ctrl-C; killed")
            kiln.kill()
        if isinstance(e, KeyboardInterrupt):
            raise
    finally:
        if not kiln.exited():
            kiln.kill()
        kiln.close()
        time.sleep(1)
        left = qemu_pids(tmp)
        if left:
            result["problems"].append(f"QEMU left running after kiln quit (pids {left}); killed")
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        result["qemu_left"] = bool(left)
        if keep:
            log(f"{mode}: kept {tmp} (pty.raw: <double time><u32 length><bytes> records)")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return result


class SerialLog:
    """The guest's serial output as QEMU logs it next to the disk (logfile= of its chardev).
    Read instead of kiln's console pane: with real pixels on screen that pane stops being
    redrawn (see GRAPHICS-NOTES.md), and the isolinux prompt gives only 1 s to answer."""

    def __init__(self, path):
        self.path, self.seen = path, 0

    def wait_for(self, needles, timeout, kiln):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with open(self.path, "rb") as f:
                    f.seek(self.seen)
                    data = f.read()
            except FileNotFoundError:
                data = b""
            hits = [(data.find(n.encode()), n) for n in needles if n.encode() in data]
            if hits:
                at, needle = min(hits)
                self.seen += at + len(needle.encode())
                return needle
            if kiln.eof.is_set():
                raise Failure(f"kiln ended while waiting for {needles[0]!r} on the serial console")
            time.sleep(0.02)
        raise Failure(f"no {needles[0]!r} on the serial console after {timeout} s")


def drive_to_shell(kiln, iso, serial):
    """Open the Install step as tests/install_tui.rs does, run it, and at the fixture ISO's
    isolinux prompt choose its `shell` entry: a root shell on ttyS0 that waits forever (the
    installer itself waits only 8 s at "type a line", then installs and powers off)."""
    kiln.wait_for("Steps", UI_TIMEOUT)
    kiln.send(DOWN)
    time.sleep(0.1)
    kiln.send(ENTER)  # Install
    kiln.wait_for("Boot installer", UI_TIMEOUT)
    kiln.type_text("disk.qcow2")
    kiln.send(TAB)
    time.sleep(0.1)
    kiln.type_text(iso)
    kiln.wait_for("bootable ISO 9660 image", UI_TIMEOUT)
    kiln.send(ENTER)  # run
    kiln.wait_for("Serial console", UI_TIMEOUT)
    kiln.send(b"c")  # keys to the serial console, ready for isolinux
    kiln.wait_for("keys → console", UI_TIMEOUT)
    # isolinux waits 1 s ("TIMEOUT 10") at its "boot: " prompt; a key stops the count-down.
    found = serial.wait_for(["boot: ", "Loading /kiln/vmlinuz"], BOOT_TIMEOUT, kiln)
    if found != "boot: ":
        raise Failure("the installer booted before its isolinux prompt was answered")
    kiln.send(b"shell\r")
    found = serial.wait_for(
        ["debug shell on /dev/ttyS0", "kiln-installer: starting"], BOOT_TIMEOUT, kiln
    )
    if found != "debug shell on /dev/ttyS0":
        raise Failure("isolinux did not take 'shell': the installer is installing")
    serial.wait_for(["# "], UI_TIMEOUT, kiln)  # the shell's prompt
    # A shell on tty1 too, so keys typed on the VGA keyboard echo on the VGA screen. Nothing
    # else writes to tty1 (the installer set the console log level to 1).
    kiln.type_text("setsid -c bash --norc -i <>/dev/tty1 >&0 2>&0 &\r")
    time.sleep(1)
    # Its text cursor hidden: QEMU draws a blinking cursor into every screendump otherwise.
    kiln.type_text(HIDE_CURSOR + "\r")
    serial.wait_for(["# "], UI_TIMEOUT, kiln)
    time.sleep(0.5)
    kiln.send(CTRL_RBRACKET)  # the keyboard back to kiln
    kiln.wait_for("keys: kiln", UI_TIMEOUT)
    if COLS < SIDE_BY_SIDE_WIDTH:
        kiln.send(b"t")  # the Screen pane instead of the console


HIDE_CURSOR = r"printf '\033[?25l' >/dev/tty1"
SHOW_CURSOR = r"printf '\033[?25h' >/dev/tty1"


def frames_between(term, t0, t1):
    with term.lock:
        return [f for f in term.frames if t0 <= f.end < t1]


def bytes_between(kiln, t0, t1):
    return sum(n for t, n in list(kiln.chunks) if t0 <= t < t1)


def still_window(kiln, mode, seconds, what):
    """Bytes/s written and kiln's CPU over `seconds`, and what the draws carried."""
    term = kiln.term
    load0 = loadavg()
    t0, cpu0 = time.monotonic(), kiln.cpu_seconds()
    time.sleep(seconds)
    t1, cpu1 = time.monotonic(), kiln.cpu_seconds()
    load1 = loadavg()
    frames = frames_between(term, t0, t1)
    written = bytes_between(kiln, t0, t1)
    w = {
        "seconds": t1 - t0,
        "bytes_per_s": written / (t1 - t0),
        "cpu": 100.0 * (cpu1 - cpu0) / (t1 - t0),
        "draws": len(frames),
        "empty_draws": sum(1 for f in frames if f.size <= EMPTY_DRAW),
        "pictures": sum(1 for f in frames if f.picture_bytes),
        "picture_bytes": sum(f.picture_bytes for f in frames),
        "pane_draws": sum(1 for f in frames if f.pane_cells),
        "load": f"{load0} → {load1}",
    }
    log(
        f"{mode}: still ({what}): {written} bytes in {w['seconds']:.1f} s = "
        f"{w['bytes_per_s']:.0f} B/s; {w['draws']} draws ({w['empty_draws']} with no change), "
        f"{w['pictures']} pictures ({w['picture_bytes']} bytes), {w['pane_draws']} draws "
        f"touching the Screen pane; kiln CPU {w['cpu']:.2f} %; load {w['load']}"
    )
    return w


def guest_command(kiln, command):
    """Type a command line into the guest's serial console (the root shell on ttyS0)."""
    kiln.send(b"c")
    kiln.wait_for("keys → console", UI_TIMEOUT)
    kiln.type_text(command + "\r")
    time.sleep(0.5)
    kiln.send(CTRL_RBRACKET)
    kiln.wait_for("keys: kiln", UI_TIMEOUT)
    if COLS < SIDE_BY_SIDE_WIDTH:
        kiln.send(b"t")  # `c` showed the console: the Screen pane again


def measure(kiln, mode, seconds, changes, result):
    term = kiln.term
    pane = None
    deadline = time.monotonic() + UI_TIMEOUT
    while pane is None and time.monotonic() < deadline:
        pane = find_pane(term)
        time.sleep(0.1)
    if pane is None:
        raise Failure("no Screen pane on the terminal")
    with term.lock:
        term.pane = pane
    log(f"{mode}: Screen pane inner cells rows {pane[0]}-{pane[2]}, columns {pane[1]}-{pane[3]}")

    # Still, truly: the cursor on tty1 hidden (set up in drive_to_shell), both guest shells
    # waiting for input, nothing else writing to tty1. The settle time lets kiln's 250 ms
    # screendump loop pick up the last change (the typed commands' echo) first.
    time.sleep(SETTLE)
    result["still"] = still_window(kiln, mode, seconds, "cursor hidden")

    # The same screen with the text cursor blinking (what a waiting text-mode installer or
    # a shell prompt shows): QEMU draws the blink into each screendump, so the picture
    # differs from one screendump to the next.
    guest_command(kiln, SHOW_CURSOR)
    time.sleep(SETTLE)
    result["blink"] = still_window(kiln, mode, seconds, "cursor blinking")
    guest_command(kiln, HIDE_CURSOR)
    time.sleep(SETTLE)

    # --- changes ------------------------------------------------------------------------
    kiln.send(b"v")  # keys to the VGA screen (the pane's border and title change once)
    kiln.wait_for("keys → screen", UI_TIMEOUT)
    time.sleep(2)
    delays_first, delays_done, frame_bytes, picture_bytes = [], [], [], []
    letters = "abcdefghijklmnopqrstuvwxyz"
    for i in range(changes):
        # A random phase against kiln's screendump tick (250 ms), so the median is fair.
        time.sleep(1.0 + random.random())
        with term.lock:
            nframes = len(term.frames)
        t_key = kiln.send(letters[i % 26].encode())
        found = wait_change(term, mode, nframes, t_key, timeout=5.0)
        if found is None:
            result["problems"].append(f"change {i + 1}: no new picture within 5 s")
            continue
        first, done, fbytes, pbytes = found
        delays_first.append(first - t_key)
        delays_done.append(done - t_key)
        frame_bytes.append(fbytes)
        picture_bytes.append(pbytes)
    result.update(
        delay_first=delays_first,
        delay_done=delays_done,
        frame_bytes=frame_bytes,
        picture_bytes=picture_bytes,
    )
    if delays_done:
        log(
            f"{mode}: change→picture: median {1000 * statistics.median(delays_done):.0f} ms "
            f"(first byte {1000 * statistics.median(delays_first):.0f} ms), "
            f"{statistics.median(frame_bytes):.0f} bytes a frame"
        )
    kiln.send(CTRL_RBRACKET)
    kiln.wait_for("keys: kiln", UI_TIMEOUT)


def wait_change(term, mode, nframes, t_key, timeout):
    """The first draw after the key press that carries a new picture (pixel modes: a picture
    sequence; half blocks: cells inside the Screen pane): (first byte time, end-of-draw time,
    bytes of that draw, picture bytes)."""
    deadline = t_key + timeout
    while time.monotonic() < deadline:
        with term.lock:
            frames = term.frames[nframes:]
        for f in frames:
            if f.end < t_key:
                continue
            if mode in PICTURE_KINDS and f.picture_bytes:
                return f.picture_start, f.end, f.size, f.picture_bytes
            if mode == "blocks" and f.pane_cells:
                return f.start, f.end, f.size, f.size
        time.sleep(0.005)
    return None


def quit_kiln(kiln, result):
    kiln.send(CTRL_C)  # quit: stops the running step (its machine) first
    if not kiln.wait_exit(90):
        result["problems"].append("kiln still running 90 s after Ctrl-C; killed")
        kiln.kill()
        return
    status = kiln.status
    if status is not None and not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0):
        result["problems"].append(f"kiln ended with wait status {status}")


# ---------------------------------------------------------------------------------------


def fixture_iso():
    out = subprocess.run(
        ["bash", os.path.join(REPO, "tests/fixtures/build.sh"), "all"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    for line in out.stdout.splitlines():
        if line.startswith("KILN_FIXTURE_ISO="):
            return line.split("=", 1)[1]
    raise SystemExit("tests/fixtures/build.sh all printed no KILN_FIXTURE_ISO (run as root)")


def kiln_binary(path):
    if path:
        return path
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target"))
    log(f"building kiln (cargo build --release, target dir {target})")
    subprocess.run(["cargo", "build", "--release"], cwd=REPO, check=True)
    return os.path.join(target, "release", "kiln")


def ms(values):
    return f"{1000 * statistics.median(values):.0f}" if values else "—"


def print_table(results, seconds):
    print()
    layout = "beside the console" if COLS >= SIDE_BY_SIDE_WIDTH else "alone (t)"
    print(
        f"kiln's Screen pane {layout}, terminal {COLS}×{ROWS} cells of {CELL_W}×{CELL_H} px; "
        f"still windows of {seconds:g} s; {os.cpu_count()} CPUs"
    )
    print("goals: ~0 bytes/s and < 2 % of a core with a still screen; change → picture ≤ 250 ms")
    print()
    head = (
        "mode", "bytes/s still", "kiln CPU % still", "change→picture ms, median (n)",
        "first byte ms", "picture bytes/frame", "bytes/s, cursor blinking",
        "kiln CPU %, blinking", "load avg (still window)",
    )
    rows = []
    for r in results:
        if "still" not in r:
            rows.append((r["mode"], "failed") + ("",) * (len(head) - 2))
            continue
        still, blink = r["still"], r.get("blink")
        done = r.get("delay_done", [])
        pb = f"{statistics.median(r['picture_bytes']):.0f}" if r.get("picture_bytes") else "—"
        if r["mode"] == "blocks" and r.get("picture_bytes"):
            pb += " (changed cells only)"
        rows.append((
            r["mode"],
            f"{still['bytes_per_s']:.0f}",
            f"{still['cpu']:.2f}",
            f"{ms(done)} ({len(done)})",
            ms(r.get("delay_first", [])),
            pb,
            f"{blink['bytes_per_s']:.0f}" if blink else "—",
            f"{blink['cpu']:.2f}" if blink else "—",
            still["load"],
        ))
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]

    def line(cells):
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"

    print(line(head))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print(line(row))
    print()
    for r in results:
        for key, what in (("still", "still, cursor hidden"), ("blink", "still, cursor blinking")):
            w = r.get(key)
            if w:
                print(
                    f"{r['mode']}: {what}: {w['draws']} draws in {w['seconds']:.1f} s "
                    f"({w['empty_draws']} changed nothing), {w['pictures']} pictures "
                    f"({w['picture_bytes']} bytes), {w['pane_draws']} draws touched the Screen pane"
                )
        d = r.get("delay_done", [])
        if d:
            print(
                f"{r['mode']}: change → picture (ms): "
                + " ".join(f"{1000 * x:.0f}" for x in d)
                + f"; first byte: " + " ".join(f"{1000 * x:.0f}" for x in r["delay_first"])
            )
        for p in r["problems"]:
            print(f"{r['mode']}: PROBLEM: {p}")


def main():
    global COLS, ROWS
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kiln", help="kiln binary (default: cargo build --release, then its binary)")
    ap.add_argument("--seconds", type=float, default=20, help="still-screen window (default 20)")
    ap.add_argument("--modes", default=",".join(MODES), help="comma-separated (default all four)")
    ap.add_argument("--changes", type=int, default=15, help="screen changes timed per mode (default 15)")
    ap.add_argument("--iso", help="installer ISO (default: tests/fixtures/build.sh all)")
    ap.add_argument("--keep", action="store_true", help="keep each mode's temp dir and raw pty log")
    ap.add_argument("--cols", type=int, default=COLS, help=f"terminal columns (default {COLS}; "
                    f"below {SIDE_BY_SIDE_WIDTH} the Screen pane is shown alone, with `t`)")
    ap.add_argument("--rows", type=int, default=ROWS, help=f"terminal rows (default {ROWS})")
    args = ap.parse_args()
    COLS, ROWS = args.cols, args.rows
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    for m in modes:
        if m not in MODES:
            ap.error(f"unknown mode {m!r} (one of {', '.join(MODES)})")
    kiln_bin = os.path.abspath(kiln_binary(args.kiln))
    iso = args.iso or fixture_iso()
    version = subprocess.run([kiln_bin, "--version"], stdout=subprocess.PIPE, text=True).stdout.strip()
    log(f"{version} ({kiln_bin}), ISO {iso}, {os.cpu_count()} CPUs, load {loadavg()}")
    results = []
    for mode in modes:
        result = run_mode(mode, kiln_bin, iso, args.seconds, args.changes, args.keep)
        if "still" not in result and any("isolinux" in p for p in result["problems"]):
            # isolinux gives 1 s to answer; a very busy host can miss it: once more
            log(f"{mode}: missed the isolinux prompt; trying once more")
            result = run_mode(mode, kiln_bin, iso, args.seconds, args.changes, args.keep)
        results.append(result)
    print_table(results, args.seconds)
    return 1 if any(r["problems"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
