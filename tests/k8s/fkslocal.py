"""fkslocal.py - FKS on loopback, started the way Kubernetes starts it, for tests/k8s.

What check_metrics.py and check_scale.py share: a fresh database on the test PostgreSQL
(FKS_TEST_PG_URL) migrated with `fks migrate`, a Redis database of its own on the test Redis
(FKS_TEST_REDIS_URL), and the real FKS programs of the build folder, each a process with the
environment a pod would get (the ConfigMap's variables, secrets from *_FILE files) on free
loopback ports. Programs stop with SIGTERM and get a grace period, then SIGKILL, as the kubelet
does. Standard library only; PostgreSQL through the psql client.
"""
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

WEBHOOK_SECRET = "k8s-test-webhook-secret-0123456789abcdef"
ADMIN_KEY = "k8s-test-admin-key-0123456789abcdefghijklmnop"

PROGRAMS = {          # program -> (path in the build folder, port variable)
    "fks-bus": ("bus/fks-bus", "FKS_BUS_PORT"),
    "fks-gateway": ("gateway/fks-gateway", "FKS_GATEWAY_PORT"),
    "fks-signal": ("workers/fks-signal", "FKS_SIGNAL_PORT"),
    "fks-execution": ("workers/fks-execution", "FKS_EXECUTION_PORT"),
    "fks-data": ("workers/fks-data", "FKS_DATA_PORT"),
    "fks-ai": ("workers/fks-ai", "FKS_AI_PORT"),
}


class Missing(Exception):
    """A service or program the test needs is not there (the test fails with this text)."""


_GIVEN = set()


def free_port():
    """A loopback port nothing listens on, in 20000-31999: below the kernel's ephemeral range,
    so no outgoing connection can take it between this check and the program's bind (binding
    port 0 hands out ephemeral ports). Never the same port twice in one process; the same
    range as tests/lib/ports.c and tools/lib.sh."""
    high = 32000
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
        if 20100 < low < high:
            high = low
    except (OSError, ValueError, IndexError):
        pass
    for _ in range(2000):
        port = random.randrange(20000, high)
        if port in _GIVEN:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _GIVEN.add(port)
        return port
    raise RuntimeError(f"no free loopback port in 20000-{high - 1}")


def find_program(build, name):
    path = os.path.join(build, PROGRAMS[name][0])
    return path if os.access(path, os.X_OK) else None


# Each cluster's Redis database: apart from every other suite's (see Cluster.__init__).
REDIS_DBS = {"metrics": 14, "scale": 15}


class Cluster:
    """A database, a Redis db, and FKS processes; use as a context manager."""

    def __init__(self, build, source, name):
        self.build, self.source, self.name = build, source, name
        pg = os.environ.get("FKS_TEST_PG_URL")
        redis = os.environ.get("FKS_TEST_REDIS_URL")
        if not pg or not redis:
            raise Missing("FKS_TEST_PG_URL and FKS_TEST_REDIS_URL are not set: run tools/test.sh, which "
                          "starts PostgreSQL and Redis and sets them")
        if not shutil.which("psql"):
            raise Missing("psql (postgresql-client) is needed")
        self.admin_url = pg
        self.db = f"fks_k8s_{name}_{os.getpid()}"
        u = urllib.parse.urlsplit(pg)
        if u.scheme not in ("postgres", "postgresql") or not u.hostname:
            raise Missing("FKS_TEST_PG_URL is not a postgresql:// URL with a host")
        self.pg_url = urllib.parse.urlunsplit((u.scheme, u.netloc, "/" + self.db, u.query, ""))
        m = re.match(r"^(redis://[^/]+)(/\d+)?$", redis)
        if not m:
            raise Missing(f"FKS_TEST_REDIS_URL is not redis://host:port[/db]: {redis}")
        # A Redis database of its own, flushed at start and end: the C suites that run beside
        # it hold 0 (shared, keys apart), 10 (execution), 11 (breaker), 12 (runtime) and 13
        # (pipeline). A number from the pid flushed theirs one time in four (seen in CI: a
        # runtime test lost its Redis state mid-run).
        if name not in REDIS_DBS:
            raise Missing(f"no Redis database is set aside for cluster {name!r} (REDIS_DBS)")
        self.redis_db = REDIS_DBS[name]
        self.redis_url = f"{m.group(1)}/{self.redis_db}"
        self.tmp = tempfile.mkdtemp(prefix=f"fks-k8s-{name}-")
        self.procs = {}         # key -> (Popen, name, port, log path)
        self.ports = {"bus": free_port(), "stream": free_port()}
        self.scope = f"k8s-{name}-{os.getpid()}"
        self.secret_dir = os.path.join(self.tmp, "secrets")
        os.makedirs(self.secret_dir, mode=0o700)
        for key, value in [("pg-url", self.pg_url), ("webhook-secret", WEBHOOK_SECRET),
                           ("admin-key", ADMIN_KEY)]:
            with open(os.path.join(self.secret_dir, key), "w", encoding="utf-8") as f:
                f.write(value + "\n")

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self):
        self.psql_admin(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')
        self.psql_admin(f'CREATE DATABASE "{self.db}"')
        fks = os.path.join(self.build, "tools", "fks")
        env = dict(os.environ, FKS_PG_URL_FILE=os.path.join(self.secret_dir, "pg-url"),
                   FKS_MIGRATIONS_DIR=os.path.join(self.source, "schemas", "migrations"))
        env.pop("FKS_PG_URL", None)
        r = subprocess.run([fks, "migrate"], env=env, capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise Missing(f"fks migrate failed: {r.stderr.strip()[-400:]}")
        subprocess.run(["redis-cli", "-u", self.redis_url, "FLUSHDB"], capture_output=True, timeout=10)
        return self

    def __exit__(self, *exc):
        for key in list(self.procs):
            self.stop(key, grace=10)
        try:
            self.psql_admin(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')
        except Exception:
            pass
        subprocess.run(["redis-cli", "-u", self.redis_url, "FLUSHDB"], capture_output=True, timeout=10)
        shutil.rmtree(self.tmp, ignore_errors=True)     # failures quote the logs' tails
        return False

    def env(self, extra=None):
        """A pod's environment: the ConfigMap's kind of variables, secrets as files."""
        e = {k: v for k, v in os.environ.items() if not k.startswith("FKS_")}
        e.update({
            "FKS_ENV": "k8s-test", "FKS_LOG_LEVEL": "info", "FKS_HTTP_BIND": "127.0.0.1",
            "FKS_PG_URL_FILE": os.path.join(self.secret_dir, "pg-url"),
            "FKS_REDIS_URL": self.redis_url,
            "FKS_BUS_URL": f"tcp://127.0.0.1:{self.ports['bus']}",
            "FKS_BUS_STREAM_URL": f"tcp://127.0.0.1:{self.ports['stream']}",
            "FKS_BUS_BIND": f"tcp://127.0.0.1:{self.ports['bus']}",
            "FKS_BUS_STREAM_BIND": f"tcp://127.0.0.1:{self.ports['stream']}",
            "FKS_BREAKER_SCOPE": self.scope,
        })
        e.update(extra or {})
        return e

    def start(self, name, key=None, extra=None, wait_ready=True, timeout=30):
        """Starts program `name` (as replica `key`) on a free ops port; waits for /ready."""
        key = key or name
        path = find_program(self.build, name)
        if not path:
            raise Missing(f"{name} is not built")
        port = free_port()
        env = self.env(extra)
        env[PROGRAMS[name][1]] = str(port)
        if name == "fks-gateway":
            env["FKS_WEBHOOK_SECRET_FILE"] = os.path.join(self.secret_dir, "webhook-secret")
            env["FKS_ADMIN_KEY_FILE"] = os.path.join(self.secret_dir, "admin-key")
        log = os.path.join(self.tmp, f"{key}.log")
        with open(log, "ab") as out:
            p = subprocess.Popen([path], env=env, stdout=out, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
        self.procs[key] = (p, name, port, log)
        if wait_ready:
            self.wait_ready(key, timeout)
        return port

    def wait_ready(self, key, timeout=30):
        p, name, port, log = self.procs[key]
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if p.poll() is not None:
                raise Missing(f"{key} exited with {p.returncode}: {self.tail(key)}")
            status, body = http("GET", f"http://127.0.0.1:{port}/ready", timeout=2)
            if status == 200:
                return
            last = f"{status} {body[:200]!r}"
            time.sleep(0.2)
        raise Missing(f"{key} not ready after {timeout}s (last /ready: {last}): {self.tail(key)}")

    def stop(self, key, grace=30, sig=signal.SIGTERM):
        """SIGTERM, then SIGKILL after `grace` seconds, as the kubelet does. Returns the exit code."""
        p = self.procs.pop(key)[0]
        if p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        return p.returncode

    def tail(self, key, n=2000):
        log = self.procs[key][3] if key in self.procs else os.path.join(self.tmp, f"{key}.log")
        try:
            with open(log, "rb") as f:
                return f.read()[-n:].decode("utf-8", "replace")
        except OSError:
            return ""

    def port(self, key):
        return self.procs[key][2]

    # ------------------------------------------------------------------ access
    def psql_admin(self, sql):
        return psql(self.admin_url, sql)

    def sql(self, sql):
        return psql(self.pg_url, sql)

    def metrics(self, key):
        status, body = http("GET", f"http://127.0.0.1:{self.port(key)}/metrics", timeout=5)
        if status != 200:
            raise Missing(f"{key} /metrics answered {status}")
        return body

    def webhook(self, body, xff="10.1.0.1", ctype="application/json", path="/webhook"):
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        return http("POST", f"http://127.0.0.1:{self.port('fks-gateway')}{path}", data=data,
                    headers={"Content-Type": ctype, "X-Forwarded-For": xff})


def psql(url, sql):
    r = subprocess.run(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql],
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise Missing(f"psql failed: {r.stderr.strip()[-300:]}")
    return r.stdout.strip()


def http(method, url, data=None, headers=None, timeout=5):
    """(status, body text); status 0 when nothing answered."""
    if isinstance(data, str):
        data = data.encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError):
        return 0, ""


def parse_exposition(text):
    """{sample name: [labels dict, ...]} and {family: type} from Prometheus text format."""
    samples, types = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            parts = line.split()
            if len(parts) >= 4:
                types[parts[2]] = parts[3]
            continue
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)", line)
        if not m:
            continue
        labels = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        labels["__value__"] = m.group(4)
        samples.setdefault(m.group(1), []).append(labels)
    return samples, types


def value(samples, name, **match):
    """Sum of the samples of `name` whose labels include `match`."""
    total = 0.0
    for s in samples.get(name, []):
        if all(s.get(k) == v for k, v in match.items()):
            total += float(s["__value__"])
    return total
