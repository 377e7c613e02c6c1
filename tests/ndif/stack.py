"""A real single-machine NDIF stack on 127.0.0.1, started from the ``ndif`` PyPI package.

`NdifStack` starts, in its own short temporary directory:

1. ``redis-server`` (Debian) -- ndif's request queue and status pub/sub;
2. ``moto_server`` -- an S3 stand-in for ndif's object store (results, job statuses);
3. a Ray head node (``ray start --head``) with one *logical* GPU and ndif's custom
   resources, then ndif's controller (a detached Ray actor) on it;
4. ndif's API (gunicorn + uvicorn worker, plus ndif's queue dispatcher process);

then deploys a model with an explicit model key and size (no Hub calls) and waits until
its replica is ready. Every service runs from the separate NDIF virtual environment
(``.venv-ndif``, made by ``make test-ndif``); the test process only talks HTTP to the API,
exactly as a user's notebook talks to NDIF.

Where this departs from production NDIF (say so in every test that relies on it):

- **CPU actor**: the model runs on CPU in a test-only subclass of ndif's
  ``BaseModelDeployment`` (``cpu_deployment.py``, selected with ``NDIF_MODEL_IMPORT_PATH``);
- **logical GPU**: Ray advertises ``--num-gpus=1`` and a fixed ``cuda_memory_bytes`` so the
  controller, which only schedules onto GPU nodes, places the model;
- **Python 3.11**: ndif 0.1.2 declares Python >= 3.12; it is installed with
  ``--ignore-requires-python`` (and numpy pinned to a wheel) and runs on 3.11;
- **moto instead of object storage** (no RustFS/S3), Redis without persistence;
- **no auth**: no ``NDIF_POSTGRES_URL``, so ndif accepts any API key;
- everything binds 127.0.0.1 (ndif's own ``ndif start`` binds all interfaces).

Every process is started in the stack's own directory with a marker in its environment
(``MECHSCOPE_NDIF_STACK=<token>``); Ray daemonises and its workers live in their own process
groups, so `stop` finds what to end by marker, directory and process tree, and ends it by
PID, never by name, then checks that nothing of it is left running or listening.

Run ``python tests/ndif/stack.py`` (main venv) to start a stack by hand, print its
address and stop it on Enter.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
#: The separate virtual environment holding ndif (its Python floor is 3.12, see above).
NDIF_VENV = Path(os.environ.get("MECHSCOPE_NDIF_VENV", REPO / ".venv-ndif"))
MARKER = "MECHSCOPE_NDIF_STACK"
#: Memory the logical GPU advertises (the controller sizes models against it).
LOGICAL_GPU_BYTES = 8_000_000_000
LOOPBACK = "127.0.0.1"


class StackError(RuntimeError):
    """The NDIF stack could not be started; the message names the log to read."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def free_port_range(n: int) -> tuple[int, int]:
    """``n`` consecutive ports that are free right now (for Ray's worker ports)."""
    for _ in range(50):
        start = free_port()
        if start + n > 65000:
            continue
        socks = []
        try:
            for p in range(start, start + n):
                s = socket.socket()
                s.bind((LOOPBACK, p))
                socks.append(s)
            return start, start + n - 1
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise StackError("no range of free ports found for Ray workers")


def _marked(token: str, workdir: Path) -> list[psutil.Process]:
    """Every live process of one stack (Ray workers and agents included).

    Matched three ways, because Ray's processes set a long title (``ray::DashboardAgent``)
    that overwrites parts of their environment block in /proc: the marker entry, any
    environment entry naming the stack's own directory (HF_HOME, HF_HUB_CACHE, NDIF_HOME),
    or a working directory inside it (every service is started there).
    """
    marker = f"{MARKER}={token}".encode()
    where = str(workdir).encode()
    found = []
    for proc in psutil.process_iter(["pid"]):
        if proc.pid == os.getpid():
            continue
        try:
            data = Path(f"/proc/{proc.pid}/environ").read_bytes()
            cwd = os.readlink(f"/proc/{proc.pid}/cwd")
        except OSError:
            continue
        if marker in data.split(b"\0") or where + b"/" in data or Path(cwd) == workdir \
                or cwd.startswith(f"{workdir}/"):
            found.append(proc)
    return found


def listeners(pids: set[int]) -> list[tuple[int, str, int]]:
    """``(pid, ip, port)`` of every TCP socket in LISTEN state owned by ``pids``."""
    out = []
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.pid in pids and conn.laddr:
            out.append((conn.pid, conn.laddr.ip, conn.laddr.port))
    return out


@dataclass
class NdifStack:
    """One NDIF stack; `start`, `deploy`, `stop` (idempotent). Timings land in `timings`."""

    venv: Path = NDIF_VENV
    token: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="msndif-", dir="/tmp")))
    ports: dict[str, int] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    seen: dict[int, psutil.Process] = field(default_factory=dict)
    extra_apis: list[str] = field(default_factory=list)

    # ---- paths and environment ---------------------------------------------------------
    @property
    def hub_cache(self) -> Path:
        return self.workdir / "hub"

    @property
    def logs(self) -> Path:
        return self.workdir / "logs"

    @property
    def host(self) -> str:
        return f"http://{LOOPBACK}:{self.ports['api']}"

    def bin(self, name: str) -> str:
        path = self.venv / "bin" / name
        if not path.exists():
            raise StackError(f"{path} is missing: run `make test-ndif` (it creates {self.venv}).")
        return str(path)

    def env(self, **extra: str) -> dict[str, str]:
        """The environment every service gets: ndif's NDIF_* settings, all on 127.0.0.1."""
        keep = {k: v for k, v in os.environ.items()
                if not k.startswith(("NDIF_", "RAY_", "VIRTUAL_ENV", "PYTHON", "HF_", "NNSIGHT"))}
        env = {
            **keep,
            MARKER: self.token,
            "PATH": f"{self.venv / 'bin'}:{keep.get('PATH', '/usr/bin:/bin')}",
            "VIRTUAL_ENV": str(self.venv),
            "PYTHONPATH": str(HERE),  # cpu_deployment.py for the Ray workers
            "PYTHONUNBUFFERED": "1",
            "HF_HUB_OFFLINE": "1",
            "HF_HUB_CACHE": str(self.hub_cache),
            "HF_HOME": str(self.workdir / "hf-home"),
            "TOKENIZERS_PARALLELISM": "false",
            "OMP_NUM_THREADS": "1",
            "OMP_WAIT_POLICY": "PASSIVE",
            "NDIF_HOME": str(self.workdir / "ndif-home"),
            "NDIF_REDIS_URL": f"redis://{LOOPBACK}:{self.ports['redis']}",
            "NDIF_OBJECT_STORE_URL": f"http://{LOOPBACK}:{self.ports['s3']}",
            "NDIF_OBJECT_STORE_ACCESS_KEY": "testing",
            "NDIF_OBJECT_STORE_SECRET_KEY": "testing",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "NDIF_RAY_ADDRESS": f"ray://{LOOPBACK}:{self.ports['ray_client']}",
            "NDIF_API_PORT": str(self.ports["api"]),
            "NDIF_API_URL": f"http://{LOOPBACK}:{self.ports['api']}",
            "NDIF_API_WORKERS": "1",
            "NDIF_DEFAULT_DTYPE": "float32",
            "NDIF_MODEL_IMPORT_PATH": "cpu_deployment.CPUModelActor",
            "NDIF_MINIMUM_DEPLOYMENT_TIME_SECONDS": "0",
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
            "RAY_USAGE_STATS_ENABLED": "0",
            "GRPC_ENABLE_FORK_SUPPORT": "0",
        }
        env.update(extra)
        return env

    def _spawn(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        self.logs.mkdir(parents=True, exist_ok=True)
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - the child keeps its own copy
        proc = subprocess.Popen(cmd, env=env or self.env(), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=self.workdir, start_new_session=True)
        log.close()
        self.procs[name] = proc
        self.seen[proc.pid] = psutil.Process(proc.pid)
        return proc

    def _run(self, name: str, cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> str:
        self.logs.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(cmd, env=env or self.env(), capture_output=True, text=True,
                              timeout=timeout, cwd=self.workdir, start_new_session=True)
        (self.logs / f"{name}.log").write_text(done.stdout + done.stderr)
        if done.returncode != 0:
            raise StackError(f"{name} failed (exit {done.returncode}):\n{done.stdout[-3000:]}\n"
                             f"{done.stderr[-3000:]}")
        return done.stdout

    def _wait(self, what: str, check: Any, timeout: float, proc: str | None = None) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if proc and self.procs[proc].poll() is not None:
                raise StackError(f"{proc} exited with {self.procs[proc].returncode} while waiting "
                                 f"for {what}; see {self.logs / (proc + '.log')}:\n"
                                 + self.tail(proc))
            try:
                if check():
                    return
            except Exception:  # noqa: BLE001 - not up yet
                pass
            time.sleep(0.2)
        raise StackError(f"timed out after {timeout:.0f} s waiting for {what}"
                         + (f"; see {self.logs / (proc + '.log')}:\n{self.tail(proc)}" if proc else ""))

    def tail(self, name: str, n: int = 40) -> str:
        path = self.logs / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:]) if path.exists() else ""

    # ---- start -------------------------------------------------------------------------
    def start(self) -> NdifStack:
        import httpx

        if shutil.which("redis-server") is None:
            raise StackError("redis-server is missing: run `make test-ndif` (apt-get install redis-server).")
        t0 = time.monotonic()
        for name in ("redis", "s3", "ray_gcs", "ray_client", "object_manager", "node_manager",
                     "metrics", "agent_grpc", "agent_http", "runtime_env_agent", "dashboard", "api"):
            self.ports[name] = free_port()
        self.ports["worker_min"], self.ports["worker_max"] = free_port_range(40)
        self.hub_cache.mkdir(parents=True, exist_ok=True)

        self._spawn("redis", ["redis-server", "--bind", LOOPBACK, "--port", str(self.ports["redis"]),
                              "--save", "", "--appendonly", "no", "--dir", str(self.workdir),
                              "--protected-mode", "yes", "--daemonize", "no"])
        self._spawn("s3", [self.bin("moto_server"), "-H", LOOPBACK, "-p", str(self.ports["s3"])])
        self._wait("redis", lambda: socket.create_connection((LOOPBACK, self.ports["redis"]), 0.5).close()
                   or True, 20, proc="redis")
        self._wait("moto S3", lambda: httpx.get(f"http://{LOOPBACK}:{self.ports['s3']}/", timeout=1)
                   .status_code < 500, 30, proc="s3")
        self.timings["redis_s3_s"] = time.monotonic() - t0

        t = time.monotonic()
        resources = json.dumps({"head": 10, "cuda_memory_bytes": LOGICAL_GPU_BYTES,
                                "cpu_memory_bytes": 8_000_000_000})
        p = self.ports
        self._run("ray-start", [
            self.bin("ray"), "start", "--head", f"--node-ip-address={LOOPBACK}",
            f"--port={p['ray_gcs']}", f"--ray-client-server-port={p['ray_client']}",
            f"--object-manager-port={p['object_manager']}", f"--node-manager-port={p['node_manager']}",
            f"--metrics-export-port={p['metrics']}", f"--dashboard-agent-grpc-port={p['agent_grpc']}",
            f"--dashboard-agent-listen-port={p['agent_http']}",
            f"--runtime-env-agent-port={p['runtime_env_agent']}",
            f"--min-worker-port={p['worker_min']}", f"--max-worker-port={p['worker_max']}",
            # ndif's controller lists nodes through Ray's state API, served by the dashboard
            "--include-dashboard=true", f"--dashboard-host={LOOPBACK}",
            f"--dashboard-port={p['dashboard']}", "--num-cpus=4", "--num-gpus=1",
            f"--resources={resources}", "--object-store-memory=200000000",
            f"--temp-dir={self.workdir / 'ray'}", "--disable-usage-stats",
        ], timeout=120)
        self.timings["ray_head_s"] = time.monotonic() - t

        t = time.monotonic()
        self._run("controller", [self.bin("python"), "-m",
                                 "ndif.services.ray.deployments.controller.controller"],
                  timeout=120, env=self.env(RAY_ADDRESS=f"{LOOPBACK}:{p['ray_gcs']}"))
        self.timings["controller_s"] = time.monotonic() - t

        t = time.monotonic()
        self.procs["api"] = self.start_api("api", p["api"])
        self._wait("the API's Ray connection (GET /connected)",
                   lambda: httpx.get(f"{self.host}/connected", timeout=2).status_code == 200,
                   120, proc="api")
        self.timings["api_s"] = time.monotonic() - t
        self.timings["start_s"] = time.monotonic() - t0
        return self

    def start_api(self, name: str, port: int, **env: str) -> subprocess.Popen:
        """ndif's API (gunicorn with ndif's config; the bind is overridden to 127.0.0.1, and
        gunicorn's control socket, shared by every gunicorn of a user, is off)."""
        proc = self._spawn(name, [
            self.bin("gunicorn"), "--config", "python:ndif.services.api.gunicorn_conf",
            "--bind", f"{LOOPBACK}:{port}", "--no-control-socket", "ndif.services.api.app:app",
        ], env=self.env(NDIF_API_PORT=str(port), **env))
        if name != "api":
            self.extra_apis.append(name)
        return proc

    # ---- models ------------------------------------------------------------------------
    def deploy(self, hub_id: str, model_key: str, size_bytes: int, timeout: float = 300) -> float:
        """Deploy ``hub_id`` under ``model_key`` (explicit key and size: no Hub calls); seconds."""
        t = time.monotonic()
        spec = {"checkpoint": hub_id, "model_key": model_key, "size_bytes": int(size_bytes),
                "dtype": "float32", "task": "text-generation"}
        script = (
            "import json, sys\n"
            "from ndif.cli.lib.deploy import deploy\n"
            f"out = deploy([json.loads({json.dumps(json.dumps(spec))})], "
            f"ray_address={json.dumps(self.env()['NDIF_RAY_ADDRESS'])}, on_message=print)\n"
            "print('RESULT', json.dumps(out, default=str))\n"
            "bad = [d for d in out['deployments'] if d['status'] != 'READY' and d.get('error')]\n"
            "sys.exit(1 if bad else 0)\n"
        )
        out = self._run("deploy", [self.bin("python"), "-c", script], timeout=timeout)
        if "RESULT" not in out:
            raise StackError(f"deploy printed no result:\n{out[-3000:]}")
        seconds = time.monotonic() - t
        self.timings["deploy_s"] = seconds
        return seconds

    # ---- stop --------------------------------------------------------------------------
    def processes(self) -> list[psutil.Process]:
        """Every live process of this stack: those carrying its marker, and every one seen
        before (psutil.Process checks its start time, so a recycled PID is never taken)."""
        for proc in _marked(self.token, self.workdir):
            self.seen.setdefault(proc.pid, proc)
        for proc in list(self.seen.values()):  # and everything they started
            try:
                for child in proc.children(recursive=True):
                    self.seen.setdefault(child.pid, child)
            except psutil.NoSuchProcess:
                continue
        return [proc for proc in self.seen.values() if _alive(proc)]

    def pids(self) -> set[int]:
        return {proc.pid for proc in self.processes()}

    def stop_process(self, name: str) -> None:
        """End one service started with `_spawn` (SIGTERM to its process group, then SIGKILL)."""
        proc = self.procs.get(name)
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)

    def stop(self) -> dict[str, Any]:
        """Stop everything this stack started; returns what was left (should be nothing)."""
        t = time.monotonic()
        self.processes()  # remember every process before anything exits
        for name in [*self.extra_apis, "api"]:
            self.stop_process(name)
        # `ray stop` would end every Ray on the machine: end this stack's by PID instead.
        # Ray's agents ignore SIGTERM and the raylet may respawn one while it shuts down,
        # so repeat until no process of this stack is left.
        for _ in range(5):
            victims = self.processes()
            if not victims:
                break
            for proc in victims:
                try:
                    proc.terminate()
                except psutil.NoSuchProcess:
                    pass
            _, alive = psutil.wait_procs(victims, timeout=5)
            for proc in alive:
                try:
                    proc.kill()
                except psutil.NoSuchProcess:
                    pass
            psutil.wait_procs(alive, timeout=5)
        for proc in self.procs.values():  # reap our direct children
            try:
                proc.wait(1)
            except subprocess.TimeoutExpired:
                pass
        left = sorted(self.pids())
        ports = sorted(v for k, v in self.ports.items() if not k.startswith("worker"))
        end = time.monotonic() + 15  # a socket closes a moment after its process is reaped
        while (busy := _listening(ports)) and time.monotonic() < end:
            time.sleep(0.2)
        self.timings["stop_s"] = time.monotonic() - t
        return {"left": left, "busy_ports": busy, "pids_seen": len(self.seen)}

    def cleanup(self, keep_logs: Path | None = None) -> None:
        if keep_logs is not None and self.logs.exists():
            shutil.rmtree(keep_logs, ignore_errors=True)
            shutil.copytree(self.logs, keep_logs)
            ray_logs = self.workdir / "ray" / "session_latest" / "logs"
            if ray_logs.exists():
                shutil.copytree(ray_logs, keep_logs / "ray", dirs_exist_ok=True)
        shutil.rmtree(self.workdir, ignore_errors=True)


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _listening(ports: list[int]) -> list[str]:
    """``"port (pid name)"`` for each of ``ports`` some process still listens on."""
    busy = []
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port in ports:
            try:
                who = f"{conn.pid} {psutil.Process(conn.pid).name()}" if conn.pid else "?"
            except psutil.NoSuchProcess:
                who = f"{conn.pid} gone"
            busy.append(f"{conn.laddr.port} ({who})")
    return busy


if __name__ == "__main__":
    stack = NdifStack()
    try:
        stack.start()
        print(f"NDIF stack at {stack.host} (workdir {stack.workdir}); timings {stack.timings}")
        if len(sys.argv) > 1:
            print("deploying", sys.argv[1:])
            stack.deploy(sys.argv[1], sys.argv[2], int(sys.argv[3]))
            print("deployed", stack.timings)
        print("listeners:", listeners(stack.pids()))
        input("Enter stops it ")
    finally:
        print("stop:", stack.stop(), stack.timings)
        stack.cleanup(keep_logs=REPO / "build" / "ndif-logs")
