"""Load test: 50 logged-in users against gunicorn on loopback, with the demo store scaled to 100k customers.

    python -m bench.load [--quick] [--postgres] [--users 50] [--seconds 60] [--think 1.0] [--customers 100000]
    python -m bench.load --no-background   # the users alone, no import or campaign (load.<db>.quiet.*)

What it does (every process it starts is stopped at the end, every loop is bounded in time):

1. ``bench.scale_demo`` builds (or reuses from its cache) the scaled database, then clones it so the
   run's writes never reach the cache (a cache whose schema the migrations moved past is brought up to
   date). 50 users are created once per build with ``flask users create --password-stdin`` (10 admins,
   30 store managers, 10 marketers), invoked through click's runner in one process.
2. gunicorn starts exactly as ``make run`` starts it (``python -m gunicorn -c gunicorn.conf.py
   "app:create_app()"``) with BIND on a free 127.0.0.1 port. SQLite: the config's one worker process
   with threads. ``--postgres``: PostgreSQL and REDIS_URL (a Redis database of its own, default
   redis://127.0.0.1:6379/7), so the config's worker count; a ``flask worker --burst`` runs the queue.
3. The 50 users log in through the real form; locust (headless, FastHttpUser) then drives them for
   ``--seconds`` (default 60): dashboard, customer list with filters/sorts and keyset ``after=`` pages,
   customer pages (linked from the lists), tiers, churn and CSV exports (``/customers?format=csv&tier=Gold``),
   each user waiting ``--think`` seconds on average between pages (0 = as fast as possible).
   Meanwhile (started ``--lead`` seconds before the users) ``flask import transactions`` loads a small
   file and a dry-run campaign (``flask campaign create … --filter band=High``, ``flask campaign send
   ID --yes``) is sent at the configured rate (quiet hours switched off in the run's copy, so it sends
   at any hour); what is left when the users stop is cancelled with ``flask campaign cancel``.
4. In the same run, a bare Flask app (written to a temporary folder, not the repository) rendering a
   50-row Jinja table is served by gunicorn with the same settings, and wrk (or locust when wrk is
   missing) measures it and the customer list page alone with 16 connections: the list page's
   throughput as a share of that ceiling.

One JSON line per measurement on stdout: name, n (customers), seconds, requests, rps, p50_ms, p95_ms,
p99_ms, errors, peak_rss_mb (the gunicorn processes), ratio (to the bare-Flask ceiling where it applies),
plus load_avg_1m (the machine is shared; a high load average means slower numbers). ``load.<db>.cores`` says
where the cores went during the users' run: CPU seconds / wall seconds per group (gunicorn's workers and the job
processes they fork, the load generator, the background CLI commands, PostgreSQL, the rest), from /proc.
Progress on stderr.
Needs locust (``pip install locust``; 2.47.0 was used) and optionally wrk (``apt-get install wrk``).
"""

from __future__ import annotations

import argparse
import csv
import html
import json
import os
import random
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
USER_AGENT = "loyalist-load/1"  # the same on login and later requests (session_protection="strong")
PASSWORD = "load-test-password-123"
REDIS_DEFAULT = "redis://127.0.0.1:6379/7"
CEILING_CONNECTIONS = 16
CEILING_SECONDS = 20
LIST_FILTERS = (
    "",
    "tier=Gold",
    "band=High",
    "store=Harbor",
    "tier=Silver&band=Medium",
    "q=smith",
    "sort=-monetary",
    "sort=-churn_probability&band=High",
    "sort=recency&store=Uptown",
    "band=Low&sort=name",
)


def log(message: str) -> None:
    print(f"[load {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def emit(record: dict) -> None:
    record.setdefault("load_avg_1m", round(os.getloadavg()[0], 2))
    print(json.dumps(record), flush=True)


# ------------------------------------------------------------------------------------------------
# The locust side: this module doubles as the locustfile (locust -f bench/load.py), only when
# LOYALIST_LOAD_SESSIONS names the sessions file, so `python -m bench.load` never imports gevent.
# ------------------------------------------------------------------------------------------------

if os.environ.get("LOYALIST_LOAD_SESSIONS"):
    import itertools

    from locust import between, constant, task
    from locust.contrib.fasthttp import FastHttpUser

    _SESSIONS = json.loads(Path(os.environ["LOYALIST_LOAD_SESSIONS"]).read_text())
    _NEXT_SESSION = itertools.count()
    _THINK = float(os.environ.get("LOYALIST_LOAD_THINK", "1.0"))
    _MODE = os.environ.get("LOYALIST_LOAD_MODE", "mixed")  # mixed | list | bare (the ceiling app's "/")
    _LIST_ONLY = _MODE != "mixed"
    _NEXT_LINK = re.compile(r'href="([^"]*after=[^"]*)" rel="next"')
    _CUSTOMER_LINK = re.compile(r'href="/customers/(\d+)"')

    class PortalUser(FastHttpUser):
        """A logged-in portal user browsing the way a store manager or marketer does."""

        wait_time = between(_THINK * 0.5, _THINK * 1.5) if _THINK > 0 else constant(0)
        connection_timeout = 30.0
        network_timeout = 120.0

        def on_start(self):
            session = _SESSIONS[next(_NEXT_SESSION) % len(_SESSIONS)]
            self.headers = {"Cookie": f"session={session['cookie']}", "User-Agent": USER_AGENT}
            self.next_page: str | None = None
            self.customer_ids: list[str] = []
            self.rng = random.Random(session["email"])

        def _get(self, path: str, name: str):
            with self.client.get(
                path, name=name, headers=self.headers, catch_response=True, allow_redirects=False
            ) as response:
                if response.status_code != 200:  # a redirect to /login (logged out) counts too
                    response.failure(f"HTTP {response.status_code}")
                return response

        def _list(self, path: str, name: str):
            response = self._get(path, name)
            body = response.text or ""
            found = _NEXT_LINK.search(body)
            self.next_page = html.unescape(found.group(1)) if found else None
            ids = _CUSTOMER_LINK.findall(body)
            if ids:
                self.customer_ids = ids

        @task(6 if _LIST_ONLY else 4)
        def customer_list(self):
            if _MODE == "bare":
                return self._get("/", "bare table")
            query = self.rng.choice(LIST_FILTERS) if not _LIST_ONLY else ""
            self._list("/customers" + ("?" + query if query else ""), "customers list")

        if not _LIST_ONLY:

            @task(3)
            def customer_list_next(self):
                if self.next_page:
                    self._list(self.next_page, "customers list after=")
                else:
                    self.customer_list()

            @task(4)
            def customer_page(self):
                if not self.customer_ids:
                    return self.customer_list()
                self._get(f"/customers/{self.rng.choice(self.customer_ids)}", "customer page")

            @task(2)
            def dashboard(self):
                self._get("/", "dashboard")

            @task(1)
            def tiers(self):
                self._get("/tiers", "tiers")

            @task(1)
            def churn(self):
                self._get("/churn", "churn")

            @task(1)
            def export_csv(self):
                self._get("/customers?format=csv&tier=Gold", "export csv tier=Gold")


# ------------------------------------------------------------------------------------------------
# The orchestrating side
# ------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Gunicorn:
    """gunicorn started as ``make run`` does, on a loopback port; stopped (its own group) by ``stop``."""

    def __init__(
        self,
        env: dict[str, str],
        app: str = "app:create_app()",
        cwd: Path = REPO,
        extra: list[str] | None = None,
        log_to: Path | None = None,
    ):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**env, "BIND": f"127.0.0.1:{self.port}"}
        self.log_file = open(log_to or os.devnull, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(REPO / "gunicorn.conf.py"), *(extra or []), app],
            cwd=cwd,
            env=env,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 180) -> None:
        import requests

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode} (log: {self.log_file.name})")
            try:
                if requests.get(self.url + "/healthz", timeout=5).status_code in (200, 404):
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise RuntimeError("gunicorn did not answer in time")

    def peak_rss_mb(self) -> float:
        """Sum of the peak RSS (VmHWM) of the master and its workers."""
        pids = [self.proc.pid]
        try:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
            pids += [int(p) for p in children]
        except OSError:
            pass
        total = 0
        for pid in pids:
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1])
            except OSError:
                pass
        return round(total / 1024, 1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # the group this object started, by its id
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.log_file.close()


def ensure_users(built, n_users: int) -> list[dict]:
    """Create the load-test users once per build with ``flask users create --password-stdin``."""
    marker = Path(built.folder) / f"users-{n_users}.json"
    if marker.exists():
        return json.loads(marker.read_text())
    stores = ("Downtown", "Harbor", "Uptown")
    users = []
    for i in range(n_users):
        if i % 5 == 0:
            users.append({"email": f"load-admin-{i:02d}@example.com", "role": "admin", "store": None})
        elif i % 5 == 4:
            users.append({"email": f"load-marketer-{i:02d}@example.com", "role": "marketer", "store": None})
        else:
            users.append({"email": f"load-manager-{i:02d}@example.com", "role": "manager", "store": stores[i % 3]})
    # `flask users create --password-stdin` for each user, invoked through click's runner in one process
    # (50 separate interpreters cost minutes of imports on a busy 2-core machine; the command is the same).
    code = (
        "import json, sys\n"
        "from app import create_app\n"
        "app = create_app()\n"
        "runner = app.test_cli_runner()\n"
        "for u in json.loads(sys.argv[1]):\n"
        "    args = ['users', 'create', u['email'], '--role', u['role'], '--password-stdin']\n"
        "    args += ['--store', u['store']] if u['store'] else []\n"
        "    r = runner.invoke(args=args, input=sys.argv[2] + '\\n')\n"
        "    if r.exit_code != 0 and 'already' not in r.output:\n"
        "        sys.exit(f\"users create {u['email']}: {r.output.strip()}\")\n"
    )
    log(f"creating {n_users} users with `flask users create --password-stdin`")
    subprocess.run(
        [sys.executable, "-c", code, json.dumps(users), PASSWORD], cwd=REPO, env=built.env(), check=True, timeout=900
    )
    marker.write_text(json.dumps(users))
    return users


def login_all(base_url: str, users: list[dict]) -> list[dict]:
    """Log every user in through the real form (CSRF token from the page); returns their session cookies."""
    import requests

    sessions = []
    for user in users:
        s = requests.Session()
        s.headers["User-Agent"] = USER_AGENT
        page = s.get(base_url + "/login", timeout=60).text
        token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page) or re.search(
            r'value="([^"]+)"[^>]*name="csrf_token"', page
        )
        r = s.post(
            base_url + "/login",
            data={"email": user["email"], "password": PASSWORD, "csrf_token": token.group(1) if token else ""},
            allow_redirects=False,
            timeout=60,
        )
        if r.status_code != 302 or "session" not in s.cookies:
            raise RuntimeError(f"login of {user['email']} failed: HTTP {r.status_code}")
        sessions.append({"email": user["email"], "role": user["role"], "cookie": s.cookies["session"]})
    return sessions


def write_import_file(folder: Path, n_lines: int, n_customers: int, seed: int = 99) -> Path:
    """A small transactions CSV for existing customers, in the data's last month, with fresh transaction ids."""
    import numpy as np

    from preprocessing import synthetic

    lines = synthetic.generate_lines(n_lines, seed=seed, days=30)
    known = lines["customer_id"] != ""
    numbers = lines.loc[known, "customer_id"].str.slice(1).astype(int).to_numpy()
    lines.loc[known, "customer_id"] = np.char.add("C", np.char.zfill(((numbers - 1) % n_customers + 1).astype(str), 5))
    lines["transaction_id"] = "LOAD-" + lines["transaction_id"]
    path = folder / f"load_import_{n_lines}.csv"
    path.write_bytes(synthetic.to_csv_bytes(lines))
    return path


class Background(threading.Thread):
    """The import and the campaign, run by the CLI while the users browse; records what happened.

    The campaign sends at the configured rate (5 messages/s by default), so a large audience takes
    longer than the test: when the users stop, ``flask campaign cancel`` stops the rest and the
    sender exits by itself (what an operator would do); its output says how far it got.
    """

    def __init__(self, env: dict[str, str], import_file: Path, redis: bool, budget: float, delay: float = 5.0):
        super().__init__(daemon=True)
        self.env, self.import_file, self.redis, self.budget, self.delay = env, import_file, redis, budget, delay
        self.results: list[dict] = []
        self.proc: subprocess.Popen | None = None

    def _record(self, name: str, started: float, code: int | None, output: str) -> None:
        lines = [line for line in output.strip().splitlines() if line.strip()]
        self.results.append(
            {
                "name": name,
                "seconds": round(time.perf_counter() - started, 1),
                "exit": code,
                "summary": lines[-1][-300:] if lines else "",
            }
        )

    def _run(self, name: str, args: list[str]) -> subprocess.CompletedProcess:
        from bench.scale_demo import flask

        started = time.perf_counter()
        out = flask(args, self.env, timeout=900, check=False)
        self._record(name, started, out.returncode, out.stdout + "\n" + out.stderr if out.returncode else out.stdout)
        return out

    def _bounded(self, name: str, args: list[str], deadline: float, campaign_id: str) -> None:
        started = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "flask", *args],
            cwd=REPO,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            output = self.proc.communicate(timeout=max(1.0, deadline - time.monotonic()))[0]
        except subprocess.TimeoutExpired:
            self._run("campaign cancel", ["campaign", "cancel", campaign_id])
            try:
                output = self.proc.communicate(timeout=180)[0]
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGTERM)
                output = self.proc.communicate(timeout=30)[0] + "\n(stopped after the cancel)"
        self._record(name, started, self.proc.returncode, output)

    def _no_quiet_hours(self) -> None:
        """Quiet hours off in this run's copy of the store, so the campaign sends whatever the hour."""
        code = (
            "from app import create_app\nfrom portal.services import settings\napp = create_app()\n"
            "with app.app_context():\n"
            "    print(settings.update({'sms.quiet_start': '00:00', 'sms.quiet_end': '00:00'}) or 'set')"
        )
        started = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", code], cwd=REPO, env=self.env, capture_output=True, text=True, timeout=120
        )
        self._record("quiet hours off", started, out.returncode, out.stdout + out.stderr)

    def run(self) -> None:
        deadline = time.monotonic() + self.budget
        time.sleep(self.delay)
        importer = threading.Thread(
            target=self._run,
            args=("import", ["import", "transactions", str(self.import_file), "--store", "Downtown"]),
            daemon=True,
        )
        importer.start()
        self._no_quiet_hours()
        created = self._run(
            "campaign create",
            [
                "campaign",
                "create",
                f"Load test {time.strftime('%H%M%S')}",
                "--filter",
                "band=High",
                "--template",
                "Hi {first_name}, we miss you at {store}: 15% off with code {code} until {expires}.",
            ],
        )
        if created.returncode == 0:
            campaign_id = created.stdout.strip().splitlines()[-1]
            if self.redis:  # the send is queued; one RQ worker runs it (and exits when the queue is empty)
                self._run("campaign send", ["campaign", "send", campaign_id, "--yes"])
                self._bounded("worker --burst", ["worker", "--burst"], deadline, campaign_id)
            else:  # the in-process runner: the command waits for the send
                self._bounded("campaign send", ["campaign", "send", campaign_id, "--yes"], deadline, campaign_id)
        importer.join(timeout=900)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)


def run_locust(
    base_url: str, sessions_file: Path, users: int, seconds: int, think: float, out_prefix: Path, mode: str = "mixed"
) -> list[dict]:
    """Run locust headless against ``base_url``; returns its per-name stats rows (incl. 'Aggregated')."""
    env = {
        **os.environ,
        "LOYALIST_LOAD_SESSIONS": str(sessions_file),
        "LOYALIST_LOAD_THINK": str(think),
        "LOYALIST_LOAD_MODE": mode,
        "PYTHONPATH": str(REPO),
    }
    cmd = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(Path(__file__).resolve()),
        "--headless",
        "-u",
        str(users),
        "-r",
        str(users),
        "-t",
        f"{seconds}s",
        "--host",
        base_url,
        "--csv",
        str(out_prefix),
        "--only-summary",
        "--stop-timeout",
        "30",
        "--loglevel",
        "WARNING",
        "--exit-code-on-error",
        "0",
    ]
    subprocess.run(
        cmd, cwd=REPO, env=env, timeout=seconds + 180, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    with open(f"{out_prefix}_stats.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def cpu_snapshot() -> dict[int, tuple[str, int, float, float]]:
    """Every process's (group, session id, its own CPU seconds so far, its reaped children's), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        own = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        children = (int(fields[13]) + int(fields[14])) / tick  # cutime, cstime: children it reaped
        if "locust" in command:
            group = "load generator (locust)"
        elif name.startswith("postgres"):
            group = "postgresql"
        elif "redis" in name:
            group = "redis"
        elif " -m flask " in command or "flask " in command:
            group = "background CLI (import, campaign send)"
        else:
            group = "other"
        out[int(entry.name)] = (group, int(fields[3]), own, children)  # fields[3]: the session id
    return out


def cores_used(before: dict, after: dict, server_session: int, seconds: float, reaped: float = 0.0) -> dict:
    """CPU used during the run, in cores (CPU seconds / wall seconds), by group: the gunicorn session (its workers,
    the job processes' server and the jobs it forked and reaped meanwhile) apart from the rest. Elsewhere a
    process that ended before the second snapshot counts only if this process reaped it (``reaped``: CPU seconds of
    this process's children that ended meanwhile, i.e. locust itself and the short CLI commands)."""
    used: dict[str, float] = {"load generator (locust) and short CLI commands that ended": reaped}
    for pid, (group, session, own, children) in after.items():
        start = before.get(pid)
        delta = own - (start[2] if start is not None else 0.0)
        if session == server_session:  # the job processes it forked and reaped meanwhile count too
            group = "web (gunicorn workers and their job processes)"
            delta += children - (start[3] if start is not None else 0.0)
        used[group] = used.get(group, 0.0) + max(delta, 0.0)
    return {
        "cores": {group: round(value / seconds, 2) for group, value in sorted(used.items()) if value > 0.05},
        "cores_total": round(sum(used.values()) / seconds, 2),
        "machine_cores": os.cpu_count(),
    }


def _f(value: str) -> float | None:
    try:
        return round(float(value), 1)
    except (TypeError, ValueError):
        return None


BARE_APP = '''
from flask import Flask, render_template_string

app = Flask(__name__)
ROWS = [{"id": i, "name": f"Customer {i}", "tier": ("Platinum", "Gold", "Silver", "Bronze")[i % 4],
         "monetary": 1234.5 + i, "frequency": i % 40, "churn": (i % 100) / 100} for i in range(50)]
PAGE = """<!doctype html><html><head><title>Customers</title></head><body><table>
<thead><tr><th>ID</th><th>Name</th><th>Tier</th><th>Spent</th><th>Visits</th><th>Churn</th></tr></thead><tbody>
{% for r in rows %}<tr><td><a href="/customers/{{ r.id }}">{{ r.id }}</a></td><td>{{ r.name }}</td><td>{{ r.tier }}</td>
<td>{{ "{:,.2f}".format(r.monetary) }}</td><td>{{ r.frequency }}</td><td>{{ "%.0f%%" % (r.churn * 100) }}</td></tr>
{% endfor %}</tbody></table></body></html>"""


@app.route("/")
def table():
    return render_template_string(PAGE, rows=ROWS)
'''


def wrk(url: str, seconds: int, connections: int, headers: dict[str, str] | None = None) -> dict | None:
    """Requests/s and latency percentiles from wrk (None when wrk is not installed)."""
    if not shutil.which("wrk"):
        return None
    cmd = ["wrk", "-t", "2", "-c", str(connections), "-d", f"{seconds}s", "--latency", "--timeout", "10s"]
    for k, v in (headers or {}).items():
        cmd += ["-H", f"{k}: {v}"]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, timeout=seconds + 60).stdout

    def ms(label: str) -> float | None:
        m = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not m:
            return None
        return round(float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)], 1)

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = int(bad.group(1)) if bad else 0
    errors += sum(int(x) for x in sock.groups()) if sock else 0
    return {
        "rps": float(rps.group(1)) if rps else None,
        "requests": int(total.group(1)) if total else None,
        "p50_ms": ms("50"),
        "p90_ms": ms("90"),
        "p99_ms": ms("99"),
        "errors": errors,
        "tool": "wrk",
    }


def ceiling(
    env: dict[str, str], workdir: Path, list_url: str, list_headers: dict[str, str], sessions_file: Path, n: int
) -> None:
    """The bare-Flask 50-row table vs the customer list alone, same gunicorn settings, 16 connections."""
    app_dir = workdir / "bare"
    app_dir.mkdir(exist_ok=True)
    (app_dir / "bare_table.py").write_text(BARE_APP)
    bare = Gunicorn(
        env,
        app="bare_table:app",
        cwd=app_dir,
        # the same gunicorn.conf.py: its access logger (portal.access_log) must be importable from the bare app's folder
        extra=["--chdir", str(app_dir), "--pythonpath", str(REPO)],
        log_to=workdir / "bare-gunicorn.log",
    )
    try:
        bare.wait_ready()
        log(f"ceiling: bare Flask 50-row table, {CEILING_CONNECTIONS} connections, {CEILING_SECONDS} s")
        result = wrk(bare.url + "/", CEILING_SECONDS, CEILING_CONNECTIONS)
        if result is None:
            rows = run_locust(
                bare.url, sessions_file, CEILING_CONNECTIONS, CEILING_SECONDS, 0.0, workdir / "bare-locust", mode="bare"
            )
            agg = next(r for r in rows if r["Name"] == "Aggregated")
            result = {
                "rps": _f(agg["Requests/s"]),
                "requests": int(agg["Request Count"]),
                "p50_ms": _f(agg["50%"]),
                "p99_ms": _f(agg["99%"]),
                "errors": int(agg["Failure Count"]),
                "tool": "locust",
            }
        bare_rss = bare.peak_rss_mb()
    finally:
        bare.stop()
    emit(
        {
            "name": "ceiling.bare_flask_table",
            "n": 50,
            "seconds": CEILING_SECONDS,
            "connections": CEILING_CONNECTIONS,
            **result,
            "peak_rss_mb": bare_rss,
            "ratio": 1.0,
        }
    )
    log(f"ceiling: customer list alone, {CEILING_CONNECTIONS} connections, {CEILING_SECONDS} s")
    listed = wrk(list_url, CEILING_SECONDS, CEILING_CONNECTIONS, list_headers)
    if listed is None:
        rows = run_locust(
            list_url.rsplit("/customers", 1)[0],
            sessions_file,
            CEILING_CONNECTIONS,
            CEILING_SECONDS,
            0.0,
            workdir / "list-locust",
            mode="list",
        )
        agg = next(r for r in rows if r["Name"] == "Aggregated")
        listed = {
            "rps": _f(agg["Requests/s"]),
            "requests": int(agg["Request Count"]),
            "p50_ms": _f(agg["50%"]),
            "p99_ms": _f(agg["99%"]),
            "errors": int(agg["Failure Count"]),
            "tool": "locust",
        }
    share = round(listed["rps"] / result["rps"], 4) if listed.get("rps") and result.get("rps") else None
    emit(
        {
            "name": "ceiling.customer_list_alone",
            "n": n,
            "seconds": CEILING_SECONDS,
            "connections": CEILING_CONNECTIONS,
            **listed,
            "ratio": share,
        }
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 customers, 10 users, 15 s")
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL + Redis (RQ) instead of SQLite")
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=730)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--think", type=float, default=1.0, help="mean seconds between a user's pages (0: none)")
    parser.add_argument("--lead", type=float, default=10.0, help="seconds between starting the CLI jobs and the users")
    parser.add_argument("--import-lines", type=int, default=5_000)
    parser.add_argument("--redis-url", default=os.environ.get("LOAD_REDIS_URL", REDIS_DEFAULT))
    parser.add_argument("--no-ceiling", action="store_true", help="skip the bare-Flask comparison")
    parser.add_argument(
        "--no-background", action="store_true", help="users only: no import and no campaign running meanwhile"
    )
    parser.add_argument("--keep", action="store_true", help="keep the run folder (logs, locust CSVs)")
    args = parser.parse_args(argv)
    if args.quick:
        args.customers, args.days, args.users, args.seconds, args.import_lines = 2000, 365, 10, 15, 1000

    from bench import scale_demo

    built = scale_demo.build(args.customers, args.days, postgres=args.postgres, log=log)
    users = ensure_users(built, args.users)
    workdir = Path(tempfile.mkdtemp(prefix="loyalist-load-"))
    run = scale_demo.working_copy(built, workdir / "db")
    backend = run.backend
    extra = {"REDIS_URL": args.redis_url} if args.postgres else {}
    env = run.env(**extra)
    import_file = write_import_file(workdir, args.import_lines, args.customers)
    server = background = None
    try:
        server = Gunicorn(env, log_to=workdir / "gunicorn.log")
        server.wait_ready()
        log(f"gunicorn on {server.url} ({backend}); logging in {len(users)} users")
        sessions = login_all(server.url, users)
        sessions_file = workdir / "sessions.json"
        sessions_file.write_text(json.dumps(sessions))
        # the CLI commands start first: their interpreters need a few seconds to import before they work
        if not args.no_background:
            budget = args.lead + args.seconds + 15
            background = Background(env, import_file, redis=bool(extra), budget=budget, delay=0)
            background.start()
            time.sleep(args.lead)
        work = "no background work" if args.no_background else "import + campaign"
        log(f"locust: {args.users} users for {args.seconds} s (think {args.think} s), {work}")
        started = time.perf_counter()
        before, reaped = cpu_snapshot(), resource.getrusage(resource.RUSAGE_CHILDREN)
        rows = run_locust(server.url, sessions_file, args.users, args.seconds, args.think, workdir / "locust")
        elapsed = round(time.perf_counter() - started, 1)
        ended = resource.getrusage(resource.RUSAGE_CHILDREN)
        ours = (ended.ru_utime + ended.ru_stime) - (reaped.ru_utime + reaped.ru_stime)
        cores = cores_used(before, cpu_snapshot(), server.proc.pid, elapsed, ours)
        if background is not None:
            background.join(timeout=900)
        rss = server.peak_rss_mb()
        for row in rows:
            name = "total" if row["Name"] == "Aggregated" else row["Name"]
            emit(
                {
                    "name": f"load.{backend}{'.quiet' if args.no_background else ''}.{name}",
                    "n": args.customers,
                    "users": args.users,
                    "seconds": args.seconds,
                    "think_s": args.think,
                    "requests": int(row["Request Count"]),
                    "rps": _f(row["Requests/s"]),
                    "p50_ms": _f(row["50%"]),
                    "p95_ms": _f(row["95%"]),
                    "p99_ms": _f(row["99%"]),
                    "max_ms": _f(row["Max Response Time"]),
                    "errors": int(row["Failure Count"]),
                    **({"peak_rss_mb": rss, "wall_s": elapsed} if name == "total" else {}),
                }
            )
        failures = Path(f"{workdir / 'locust'}_failures.csv")
        if failures.exists():
            for row in list(csv.DictReader(failures.open()))[:10]:
                log(f"failure: {row}")
        emit({"name": f"load.{backend}{'.quiet' if args.no_background else ''}.cores", "n": args.customers, **cores})
        for result in background.results if background is not None else []:
            emit({**result, "name": f"load.{backend}.background.{result['name']}", "n": args.customers})
        if not args.no_ceiling:
            server.stop()
            # same gunicorn settings, now without the background work and the 50 users
            server = Gunicorn(env, log_to=workdir / "gunicorn-list.log")
            server.wait_ready()
            session = sessions[0]
            ceiling(
                env,
                workdir,
                server.url + "/customers",
                {"Cookie": f"session={session['cookie']}", "User-Agent": USER_AGENT},
                sessions_file,
                args.customers,
            )
    finally:
        if background is not None:
            background.stop()
        if server is not None:
            server.stop()
        if args.keep:
            log(f"kept {workdir}")
        else:
            scale_demo.drop_working_copy(run)
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
