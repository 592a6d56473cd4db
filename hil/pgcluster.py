"""A throw-away PostgreSQL cluster (Debian's server binaries, initdb + pg_ctl) in a temp
directory on a free loopback port, for the hub's tests and `bench hub`. PostgreSQL
refuses to run as root, so as root the cluster runs as the unprivileged user `nobody`
(runuser); its files are removed on stop."""
import atexit
import glob
import os
import shutil
import subprocess
import tempfile

from hil.procs import free_port


def _bindir():
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(p.split("/")[4]))
    if found:
        return os.path.dirname(found[-1])
    w = shutil.which("initdb")
    if w:
        return os.path.dirname(os.path.realpath(w))
    raise RuntimeError("PostgreSQL server binaries are missing: run `make setup` "
                       "(tools/setup/ensure-postgres.sh) or `sudo apt-get install -y postgresql`")


class PgCluster:
    def __init__(self, user="nobody"):
        self.bin = _bindir()
        self.root = tempfile.mkdtemp(prefix="hub-pg-")
        self.data = os.path.join(self.root, "data")
        self.port = free_port()
        self.as_root = os.geteuid() == 0
        self.user = user
        if self.as_root:
            os.chmod(self.root, 0o755)
            shutil.chown(self.root, user=user)

    def _run(self, *args, check=True):
        cmd = list(args)
        if self.as_root:
            cmd = ["runuser", "-u", self.user, "--"] + cmd
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=self.root)
        if check and r.returncode:
            raise RuntimeError("%s failed: %s%s" % (" ".join(args[:2]), r.stdout[-2000:],
                                                    r.stderr[-2000:]))
        return r

    def start(self):
        self._run(os.path.join(self.bin, "initdb"), "-D", self.data, "-U", "hub",
                  "--auth=trust", "-E", "UTF8", "--no-sync", "--locale=C")
        opts = ("-c listen_addresses=127.0.0.1 -p %d -c unix_socket_directories=%s "
                "-c fsync=on -c max_connections=50 -c shared_buffers=64MB" % (self.port, self.root))
        self._run(os.path.join(self.bin, "pg_ctl"), "-D", self.data, "-o", opts, "-l",
                  os.path.join(self.root, "pg.log"), "-w", "-t", "60", "start")
        atexit.register(self.stop)      # also when the caller forgets or dies of an exception
        return self

    def url(self, dbname="postgres"):
        return "postgresql://hub@127.0.0.1:%d/%s" % (self.port, dbname)

    def create_db(self, name):
        import psycopg
        with psycopg.connect(self.url(), autocommit=True) as c:
            c.execute("DROP DATABASE IF EXISTS %s" % name)
            c.execute("CREATE DATABASE %s" % name)
        return self.url(name)

    def stop(self):
        if not os.path.exists(self.root):
            return
        if os.path.exists(os.path.join(self.data, "postmaster.pid")):
            self._run(os.path.join(self.bin, "pg_ctl"), "-D", self.data, "-m", "immediate",
                      "-w", "stop", check=False)
        shutil.rmtree(self.root, ignore_errors=True)
