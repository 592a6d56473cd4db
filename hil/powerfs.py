"""A FUSE filesystem that can lose power: the power-cut rig for the gateway's state.

Everything lives in memory in two layers per inode: what the program sees (the page
cache) and what is on the "disk". Only the calls a program makes to be durable move
data to the disk layer, in the strict POSIX reading:

- fsync/fdatasync(file) makes that file's *contents* durable (writes, truncations);
- fsyncdir(dir) makes that directory's *entries* durable (creates, renames, unlinks,
  mkdirs in it): a renamed or new file survives a cut only once its directory was
  synced, whatever its contents.

A cut (`PowerFs.cut()`, over the control socket: `cut`) unmounts, throws away every
unsynced write, truncation, rename, create and unlink, and mounts again: a reboot.
The kernel's caches for the mount go with the unmount. Sabotage for the rig's own
test: `lie` makes fsync/fsyncdir succeed without doing anything (a disk that lies
about its write cache); a rig that does not notice lost data then is no rig.

    python -m hil.powerfs MOUNTPOINT CONTROL_SOCKET     # foreground; tests use PowerFsProcess

Control socket (one line per request, one line back): `cut`, `lie`, `stats`, `quit`."""
import errno
import os
import socket
import stat
import subprocess
import sys
import threading
import time

try:
    import mfusepy as fuse
except (ImportError, OSError) as e:          # OSError: libfuse3 itself is missing
    fuse = None
    IMPORT_ERROR = str(e)
else:
    IMPORT_ERROR = None


def unavailable():
    """Why a power-cut rig cannot run here, or None when it can."""
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse on this machine (FUSE power-cut rig needs it; CI has it)"
    if fuse is None:
        return "mfusepy/libfuse3 not usable: %s (make setup installs fuse3, libfuse3-3)" % (
            IMPORT_ERROR,)
    if not (_which("fusermount3") or _which("fusermount")):
        return "fusermount3 missing (apt: fuse3; make setup installs it)"
    return None


def _which(name):
    for d in os.environ.get("PATH", "/usr/bin:/bin").split(":") + ["/usr/bin", "/bin"]:
        p = os.path.join(d, name)
        if os.access(p, os.X_OK):
            return p
    return None


class Inode:
    __slots__ = ("ino", "is_dir", "mode", "data", "disk", "children", "disk_children", "mtime")

    def __init__(self, ino, is_dir, mode):
        self.ino, self.is_dir, self.mode = ino, is_dir, mode
        self.data = bytearray()          # what programs see
        self.disk = b""                  # what a cut keeps (contents)
        self.children = {} if is_dir else None        # name -> Inode, as seen
        self.disk_children = {} if is_dir else None   # name -> Inode, as on disk
        self.mtime = time.time()


_Base = fuse.Operations if fuse else object


class PowerFs(_Base):
    use_ns = True

    def __init__(self):
        self.mutex = threading.RLock()
        self.next_ino = 2
        self.root = Inode(1, True, 0o755)
        self.handles = {}                # fh -> Inode (open files outlive unlink/rename)
        self.next_fh = 1
        self.lying = False
        self.stats = {"cuts": 0, "fsyncs": 0, "fsyncdirs": 0, "writes": 0,
                      "dropped_bytes": 0, "dropped_entries": 0}

    # ---------------------------------------------------------------- power
    def cut(self):
        """Power lost: the disk layer is all that is left."""
        with self.mutex:
            self.stats["cuts"] += 1
            seen = set()

            def walk(d):
                for name, child in list(d.children.items()):
                    if d.disk_children.get(name) is not child:
                        self.stats["dropped_entries"] += 1
                d.children = dict(d.disk_children)
                for child in d.children.values():
                    if child.ino in seen:
                        continue
                    seen.add(child.ino)
                    if child.is_dir:
                        walk(child)
                    else:
                        if bytes(child.data) != child.disk:
                            self.stats["dropped_bytes"] += abs(len(child.data) - len(child.disk)) or 1
                        child.data = bytearray(child.disk)
            walk(self.root)
            self.handles.clear()

    def unsynced(self):
        """Bytes (and directory entries) a cut now would drop; changes nothing."""
        with self.mutex:
            n, seen = 0, set()

            def walk(d):
                nonlocal n
                n += sum(1 for name, child in d.children.items()
                         if d.disk_children.get(name) is not child)
                for child in d.children.values():
                    if child.ino in seen:
                        continue
                    seen.add(child.ino)
                    if child.is_dir:
                        walk(child)
                    elif bytes(child.data) != child.disk:
                        n += abs(len(child.data) - len(child.disk)) or 1
            walk(self.root)
            return n

    # ---------------------------------------------------------------- helpers
    def _lookup(self, path):
        node = self.root
        for part in path.strip("/").split("/"):
            if not part:
                continue
            if not node.is_dir or part not in node.children:
                raise fuse.FuseOSError(errno.ENOENT)
            node = node.children[part]
        return node

    def _parent(self, path):
        head, name = os.path.split(path.rstrip("/"))
        d = self._lookup(head or "/")
        if not d.is_dir:
            raise fuse.FuseOSError(errno.ENOTDIR)
        return d, name

    def _new(self, is_dir, mode):
        n = Inode(self.next_ino, is_dir, mode & 0o7777)
        self.next_ino += 1
        return n

    def _fh(self, node):
        fh = self.next_fh
        self.next_fh += 1
        self.handles[fh] = node
        return fh

    def _node(self, path, fh):
        if fh and fh in self.handles:
            return self.handles[fh]
        return self._lookup(path)

    # ---------------------------------------------------------------- metadata
    def getattr(self, path, fh=None):
        with self.mutex:
            n = self._node(path, fh)
            t = int(n.mtime * 1e9)
            if n.is_dir:
                return {"st_mode": stat.S_IFDIR | n.mode, "st_nlink": 2, "st_size": 4096,
                        "st_ino": n.ino, "st_mtime": t, "st_ctime": t, "st_atime": t,
                        "st_uid": os.getuid(), "st_gid": os.getgid()}
            return {"st_mode": stat.S_IFREG | n.mode, "st_nlink": 1, "st_size": len(n.data),
                    "st_ino": n.ino, "st_mtime": t, "st_ctime": t, "st_atime": t,
                    "st_uid": os.getuid(), "st_gid": os.getgid(),
                    "st_blocks": (len(n.data) + 511) // 512}

    def readdir(self, path, fh):
        with self.mutex:
            return [".", ".."] + list(self._lookup(path).children)

    def statfs(self, path):
        with self.mutex:
            used = sum(len(h.data) for h in self.handles.values())
        return {"f_bsize": 4096, "f_frsize": 4096, "f_blocks": 1 << 20,
                "f_bfree": (1 << 20) - used // 4096, "f_bavail": (1 << 20) - used // 4096,
                "f_files": 1 << 16, "f_ffree": 1 << 16, "f_favail": 1 << 16, "f_namemax": 255}

    def chmod(self, path, mode):
        with self.mutex:
            self._lookup(path).mode = mode & 0o7777
        return 0

    def chown(self, path, uid, gid):
        return 0

    def utimens(self, path, times=None):
        with self.mutex:
            self._lookup(path).mtime = time.time()
        return 0

    def access(self, path, amode):
        with self.mutex:
            self._lookup(path)
        return 0

    # ---------------------------------------------------------------- namespace
    def mkdir(self, path, mode):
        with self.mutex:
            d, name = self._parent(path)
            if name in d.children:
                raise fuse.FuseOSError(errno.EEXIST)
            d.children[name] = self._new(True, mode)
            d.mtime = time.time()
        return 0

    def rmdir(self, path):
        with self.mutex:
            d, name = self._parent(path)
            n = d.children.get(name)
            if n is None:
                raise fuse.FuseOSError(errno.ENOENT)
            if not n.is_dir:
                raise fuse.FuseOSError(errno.ENOTDIR)
            if n.children:
                raise fuse.FuseOSError(errno.ENOTEMPTY)
            del d.children[name]
        return 0

    def unlink(self, path):
        with self.mutex:
            d, name = self._parent(path)
            n = d.children.get(name)
            if n is None:
                raise fuse.FuseOSError(errno.ENOENT)
            if n.is_dir:
                raise fuse.FuseOSError(errno.EISDIR)
            del d.children[name]
            d.mtime = time.time()
        return 0

    def rename(self, old, new):
        with self.mutex:
            d0, n0 = self._parent(old)
            d1, n1 = self._parent(new)
            node = d0.children.get(n0)
            if node is None:
                raise fuse.FuseOSError(errno.ENOENT)
            target = d1.children.get(n1)
            if target is not None and target.is_dir and target.children:
                raise fuse.FuseOSError(errno.ENOTEMPTY)
            del d0.children[n0]
            d1.children[n1] = node
            d0.mtime = d1.mtime = time.time()
        return 0

    # ---------------------------------------------------------------- files
    def create(self, path, mode, fi=None):
        with self.mutex:
            d, name = self._parent(path)
            n = d.children.get(name)
            if n is None:
                n = self._new(False, mode)
                d.children[name] = n
                d.mtime = time.time()
            return self._fh(n)

    def open(self, path, flags):
        with self.mutex:
            n = self._lookup(path)
            if flags & os.O_TRUNC:
                n.data = bytearray()
            return self._fh(n)

    def opendir(self, path):
        with self.mutex:
            n = self._lookup(path)
            if not n.is_dir:
                raise fuse.FuseOSError(errno.ENOTDIR)
            return self._fh(n)

    def release(self, path, fh):
        with self.mutex:
            self.handles.pop(fh, None)
        return 0

    def releasedir(self, path, fh):
        return self.release(path, fh)

    def read(self, path, size, offset, fh):
        with self.mutex:
            n = self._node(path, fh)
            return bytes(n.data[offset:offset + size])

    def write(self, path, data, offset, fh):
        with self.mutex:
            n = self._node(path, fh)
            if offset > len(n.data):
                n.data.extend(bytes(offset - len(n.data)))
            n.data[offset:offset + len(data)] = data
            n.mtime = time.time()
            self.stats["writes"] += 1
            return len(data)

    def truncate(self, path, length, fh=None):
        with self.mutex:
            n = self._node(path, fh)
            if length < len(n.data):
                del n.data[length:]
            else:
                n.data.extend(bytes(length - len(n.data)))
            n.mtime = time.time()
        return 0

    def lock(self, path, fh, cmd, lock):
        # One program at a time uses the mount (the daemon under test): every lock is
        # granted, and F_GETLK reports none held. Enough for SQLite's file locks.
        import fcntl
        if cmd == fcntl.F_GETLK and lock:
            lock.contents.l_type = fcntl.F_UNLCK
        return 0

    def flush(self, path, fh):
        return 0                           # close() is no flush to disk: only fsync is

    def fsync(self, path, datasync, fh):
        with self.mutex:
            self.stats["fsyncs"] += 1
            if not self.lying:
                n = self._node(path, fh)
                n.disk = bytes(n.data)
        return 0

    def fsyncdir(self, path, datasync, fh):
        with self.mutex:
            self.stats["fsyncdirs"] += 1
            if not self.lying:
                d = self._node(path, fh)
                d.disk_children = dict(d.children)
        return 0


# -------------------------------------------------------------------- the process

def _unmount(mnt):
    tool = _which("fusermount3") or _which("fusermount")
    for _ in range(200):
        r = subprocess.run([tool, "-u", mnt], capture_output=True, text=True)
        if r.returncode == 0 or not os.path.ismount(mnt):
            return
        time.sleep(0.05)                   # busy: a dying process still holds a file
    subprocess.run([tool, "-uz", mnt], capture_output=True)


def serve(mnt, ctl):
    """Mount, answer the control socket; a cut unmounts, drops, mounts again."""
    fs = PowerFs()
    mounted = threading.Event()
    want = {"cut": False, "quit": False}
    fs.init = lambda path: mounted.set()

    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if os.path.exists(ctl):
        os.unlink(ctl)
    srv.bind(ctl)
    srv.listen(4)

    def control():
        while True:
            conn, _ = srv.accept()
            with conn, conn.makefile("rw") as f:
                for line in f:
                    cmd = line.strip()
                    if cmd == "cut":
                        mounted.clear()
                        want["cut"] = True
                        _unmount(mnt)
                        ok = mounted.wait(60)
                        f.write(("ok %r\n" % fs.stats) if ok else "error: no remount\n")
                    elif cmd == "lie":
                        fs.lying = True
                        f.write("ok\n")
                    elif cmd == "stats":
                        f.write("ok %r\n" % fs.stats)
                    elif cmd == "unsynced":
                        f.write("ok %d\n" % fs.unsynced())
                    elif cmd == "quit":
                        want["quit"] = True
                        f.write("ok\n")
                        f.flush()
                        _unmount(mnt)
                        return
                    else:
                        f.write("error: unknown command %r\n" % cmd)
                    f.flush()

    threading.Thread(target=control, daemon=True).start()
    while not want["quit"]:
        fuse.FUSE(fs, mnt, foreground=True, nothreads=True, hard_remove=True,
                  fsname="powerfs")
        if want["cut"]:
            want["cut"] = False
            fs.cut()
    srv.close()


class PowerFsProcess:
    """The filesystem in its own process (a FUSE daemon blocks its thread), mounted at
    `mnt`, controlled over a Unix socket."""

    def __init__(self, mnt, ctl):
        self.mnt, self.ctl = str(mnt), str(ctl)
        self.proc = None

    def start(self, timeout=60):
        os.makedirs(self.mnt, exist_ok=True)
        self.proc = subprocess.Popen([sys.executable, "-m", "hil.powerfs", self.mnt, self.ctl],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     cwd=os.path.dirname(os.path.dirname(os.path.abspath(
                                         __file__))))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if os.path.ismount(self.mnt) and os.path.exists(self.ctl):
                return self
            if self.proc.poll() is not None:
                raise RuntimeError("powerfs exited: %s" % self.proc.stdout.read().decode()[-2000:])
            time.sleep(0.02)
        self.close()
        raise RuntimeError("powerfs did not mount %s within %d s" % (self.mnt, timeout))

    def request(self, cmd, timeout=120):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(self.ctl)
        with s, s.makefile("rw") as f:
            f.write(cmd + "\n")
            f.flush()
            line = f.readline().strip()
        if not line.startswith("ok"):
            raise RuntimeError("powerfs %s: %s" % (cmd, line or "no answer"))
        return line[3:]

    def cut(self):
        import ast
        return ast.literal_eval(self.request("cut"))

    def stats(self):
        import ast
        return ast.literal_eval(self.request("stats"))

    def unsynced(self):
        return int(self.request("unsynced"))

    def lie(self):
        self.request("lie")

    def close(self):
        if self.proc is None:
            return
        try:
            if self.proc.poll() is None:
                self.request("quit", timeout=30)
                self.proc.wait(30)
        except (OSError, RuntimeError, subprocess.TimeoutExpired):
            pass
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)
            if os.path.ismount(self.mnt):
                _unmount(self.mnt)
            self.proc = None


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m hil.powerfs MOUNTPOINT CONTROL_SOCKET")
    why = unavailable()
    if why:
        sys.exit(why)
    serve(sys.argv[1], sys.argv[2])
