"""wrk runs: one target per run, targets interleaved in rounds, medians reported.

A target is a URL and a Lua script from bench/lua with its BENCH_* variables. Each run is
``wrk -t<threads> -c<connections> -d<seconds>s --latency --timeout 10s -s <script> <url>``;
from its output: requests/s, p50/p90/p99 of the ``--latency`` distribution, total requests, socket
errors, ``Non-2xx or 3xx responses`` and the script's own count of answers whose status is not the
expected one (a 301 or a 200 is no error to wrk). gunicorn's sync workers close the connection after
every answer, so wrk reconnects for each request, for ours and the naive alike.

Round 1 runs the targets in order, round 2 in reverse, and so on, so each meets the same drift of
the machine's load; a target's figure is the median of its rounds.
"""
import os
import re
import shutil
import statistics
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

LUA_DIR = Path(__file__).resolve().parents[1] / "lua"
APT_OPTIONS = ["-o", "DPkg::Lock::Timeout=600", "-o", "Acquire::Retries=3"]
UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


@dataclass
class Target:
    name: str
    url: str
    script: str  # paths.lua or webhook.lua
    env: dict = field(default_factory=dict)  # BENCH_* variables for the script
    expect: int = 200
    ids_dir: Path | None = None  # webhook targets: where each run writes the event ids answered
    server_cpu: Callable[[], float] | None = None  # CPU seconds used so far by the server's processes


@dataclass
class Run:
    rps: float
    p50: float
    p90: float
    p99: float
    requests: int
    non_2xx: int
    unexpected: int
    unexpected_detail: str
    socket_errors: int
    ids: list[str]
    server_cpu_ms: float  # the server's CPU per answered request during the run
    machine_cpu_ms: float  # the whole machine's busy CPU per answered request: wrk, server, database, Redis


def parse(output: str) -> dict:
    """Figures of one wrk run's output (latencies in ms)."""
    def number(pattern, default=None):
        match = re.search(pattern, output, re.M)
        if match is None:
            if default is None:
                raise ValueError(f"wrk output without {pattern!r}:\n{output}")
            return default
        return match.groups()

    latency = {p: float(v) * UNITS[u] for p, v, u in re.findall(r"^\s+(50|90|99)%\s+([\d.]+)(us|ms|s|m|h)\s*$",
                                                                   output, re.M)}
    if set(latency) != {"50", "90", "99"}:
        raise ValueError(f"wrk output without a latency distribution:\n{output}")
    socket = number(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", ("0", "0", "0", "0"))
    unexpected = number(r"^bench: unexpected (\d+)(.*)$")
    return {
        "rps": float(number(r"^Requests/sec:\s+([\d.]+)")[0]),
        "p50": latency["50"], "p90": latency["90"], "p99": latency["99"],
        "requests": int(number(r"^\s+(\d+) requests in")[0]),
        "non_2xx": int(number(r"Non-2xx or 3xx responses: (\d+)", ("0",))[0]),
        "unexpected": int(unexpected[0]), "unexpected_detail": unexpected[1].strip(),
        "socket_errors": sum(map(int, socket)),
    }


def wrk_binary() -> str:
    """The wrk executable; installed with apt-get (Debian package ``wrk``) when it is missing."""
    found = shutil.which("wrk")
    if found:
        return found
    print("wrk is missing: installing it with apt-get (package wrk)", flush=True)
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    apt = [*sudo, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", *APT_OPTIONS]
    for step in (["update", "-qq"], ["install", "-y", "-qq", "wrk"]):
        if subprocess.call([*apt, *step], stdout=subprocess.DEVNULL):
            sys.exit(f"apt-get {step[0]} failed: install wrk (Debian package wrk) and run again")
    found = shutil.which("wrk")
    if not found:
        sys.exit("apt-get installed wrk but it is not on PATH")
    return found


def run_wrk(target: Target, seconds: float, threads: int, connections: int, tag: str) -> Run:
    ids_file = target.ids_dir / f"{tag}.ids" if target.ids_dir else None
    env = {**os.environ, **target.env, "BENCH_LUA_DIR": str(LUA_DIR), "BENCH_EXPECT": str(target.expect),
           "BENCH_THREADS": str(threads)}
    if ids_file:
        env["BENCH_IDS_OUT"] = str(ids_file)
        env["BENCH_DELIVERY_PREFIX"] = f"{target.env.get('BENCH_DELIVERY_PREFIX', 'bench')}-{tag}"
    command = [wrk_binary(), f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency",
               "--timeout", "10s", "-s", str(LUA_DIR / target.script), target.url]
    server_cpu = target.server_cpu or (lambda: 0.0)
    server_before, machine_before = server_cpu(), busy_seconds()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    server, machine = server_cpu() - server_before, busy_seconds() - machine_before
    if done.returncode:
        sys.exit(f"{target.name}: wrk exited with {done.returncode}:\n{done.stdout}\n{done.stderr}")
    figures = parse(done.stdout)
    answered = max(1, figures["requests"])
    ids = ids_file.read_text().split() if ids_file else []
    return Run(**figures, ids=ids, server_cpu_ms=server * 1000 / answered, machine_cpu_ms=machine * 1000 / answered)


def paths_target(name: str, base_url: str, requests: list[tuple[str, dict]], directory: Path,
                 server_cpu: Callable[[], float] | None = None) -> Target:
    """A paths.lua target cycling over ``requests`` ((path, headers) GETs), written to a file in ``directory``."""
    file = directory / f"{slug(name)}.requests"
    file.write_text("".join("\t".join(["GET", path, *(f"{k}: {v}" for k, v in headers.items())]) + "\n"
                            for path, headers in requests))
    return Target(name, base_url + requests[0][0], "paths.lua", {"BENCH_REQUESTS_FILE": str(file)},
                  server_cpu=server_cpu)


def load_average() -> float:
    return os.getloadavg()[0]


def cpu_jiffies() -> list[int]:
    """The machine's CPU time so far, all CPUs, in jiffies: user nice system idle iowait irq softirq
    steal (the first line of /proc/stat; zeros where there is none)."""
    try:
        return [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return [0] * 8


def busy_seconds() -> float:
    """CPU seconds the machine spent busy (not idle, not waiting for I/O, not stolen) so far, all CPUs."""
    f = cpu_jiffies()
    return (f[0] + f[1] + f[2] + f[5] + f[6]) / os.sysconf("SC_CLK_TCK")  # user nice system irq softirq


def cpu_counters() -> tuple[int, int]:
    """(steal, total) CPU time of the machine so far, in jiffies."""
    fields = cpu_jiffies()
    return fields[7], sum(fields)


def machine_line(load_before: float, counters_before: tuple[int, int]) -> str:
    """The 1-minute load average before and after, and the share of CPU time the hypervisor took
    (steal) meanwhile: on a shared virtual machine, what moves the absolute figures between runs."""
    steal, total = (after - before for after, before in zip(cpu_counters(), counters_before, strict=True))
    share = f"; CPU steal {100 * steal / total:.1f} % of the time" if total else ""
    return (f"1-minute load average: {load_before:.2f} before, {load_average():.2f} after ({os.cpu_count()} CPUs; "
            f"wrk, both servers, the database and Redis share them{share})")


def run_rounds(targets: list[Target], *, rounds: int, seconds: float, warmup: float, threads: int,
               connections: int) -> tuple[dict[str, list[Run]], dict[str, Run]]:
    """Warm every target up (unmeasured), then ``rounds`` rounds, reversing the order every other one.

    Returns the measured runs per target and the warm-up run per target (whose answers count in a
    webhook target's loss accounting: those deliveries are stored too).
    """
    warm = {}
    if warmup > 0:
        for target in targets:
            warm[target.name] = run_wrk(target, warmup, threads, connections, f"{slug(target.name)}-warm")
    runs: dict[str, list[Run]] = {target.name: [] for target in targets}
    for number in range(rounds):
        order = targets if number % 2 == 0 else targets[::-1]
        for target in order:
            run = run_wrk(target, seconds, threads, connections, f"{slug(target.name)}-r{number + 1}")
            runs[target.name].append(run)
            print(f"  round {number + 1}: {target.name:<24} {run.rps:>9.1f} req/s  p50 {run.p50:7.1f} ms"
                  f"  p99 {run.p99:7.1f} ms  load {load_average():.2f}", flush=True)
    return runs, warm


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-")


@dataclass
class Summary:
    rps: float
    p50: float
    p90: float
    p99: float
    requests: int
    non_2xx: int
    unexpected: int
    socket_errors: int
    detail: str
    server_cpu_ms: float
    machine_cpu_ms: float

    @property
    def failed(self) -> bool:
        return bool(self.non_2xx or self.unexpected)


def summarize(runs: list[Run]) -> Summary:
    """Medians of the rounds' req/s and percentiles; totals of the counts."""
    return Summary(
        rps=statistics.median(r.rps for r in runs), p50=statistics.median(r.p50 for r in runs),
        p90=statistics.median(r.p90 for r in runs), p99=statistics.median(r.p99 for r in runs),
        requests=sum(r.requests for r in runs), non_2xx=sum(r.non_2xx for r in runs),
        unexpected=sum(r.unexpected for r in runs), socket_errors=sum(r.socket_errors for r in runs),
        detail=" ".join(r.unexpected_detail for r in runs if r.unexpected_detail),
        server_cpu_ms=statistics.median(r.server_cpu_ms for r in runs),
        machine_cpu_ms=statistics.median(r.machine_cpu_ms for r in runs),
    )


HEADER = (f"{'target':<14} {'req/s':>8} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} {'requests':>8} "
          f"{'non-2xx':>7} {'other':>5} {'sockerr':>7} {'srv CPU':>7} {'all CPU':>7}")
LEGEND = ("req/s and latencies: medians of the rounds; requests, non-2xx (wrk's count), other (answers not the "
          "expected status, counted by the Lua script) and sockerr: totals; srv CPU: ms of CPU the server's "
          "gunicorn processes used per answer; all CPU: ms of the whole machine's busy CPU per answer (wrk, "
          "server, database, Redis): the 2 CPUs' budget divided by it bounds req/s")


def row(name: str, s: Summary) -> str:
    return (f"{name:<14} {s.rps:>8.1f} {s.p50:>7.1f} {s.p90:>7.1f} {s.p99:>7.1f} {s.requests:>8} "
            f"{s.non_2xx:>7} {s.unexpected:>5} {s.socket_errors:>7} {s.server_cpu_ms:>7.2f} {s.machine_cpu_ms:>7.2f}")


# --- Ratios and the goals they are read against ----------------------------------------------------------


@dataclass(frozen=True)
class Goal:
    """A figure's goal: at least ``at_least``, or below ``below``."""

    at_least: float | None = None
    below: float | None = None

    def holds(self, value: float) -> bool:
        return (self.at_least is None or value >= self.at_least) and (self.below is None or value < self.below)

    def __str__(self) -> str:
        return f"goal >= {self.at_least:g}" if self.at_least is not None else f"goal < {self.below:g}"


def ratio_line(runs: dict[str, list[Run]], a: str, b: str, text: str, goal: Goal | None = None,
               verdicts: list | None = None) -> str:
    """``a``'s median req/s over ``b``'s, the lowest and highest of the same ratio round by round (the two
    targets of a round run one after the other), and, with a goal, whether the median meets it (appended
    to ``verdicts`` as (name, held))."""
    value = statistics.median(r.rps for r in runs[a]) / statistics.median(r.rps for r in runs[b])
    per_round = [x.rps / y.rps for x, y in zip(runs[a], runs[b], strict=True)]
    name = f"{a} / {b}"
    line = f"{name:<30} {value:5.2f}  rounds {min(per_round):.2f}-{max(per_round):.2f}  {text.format(value=value)}"
    return line + _verdict(name, value, goal, verdicts)


def figure_line(name: str, value: float, unit: str, goal: Goal, verdicts: list) -> str:
    """A figure other than a ratio (a p99, a count) against its goal."""
    return f"{name:<30} {value:5.1f} {unit}" + _verdict(name, value, goal, verdicts)


def _verdict(name: str, value: float, goal: Goal | None, verdicts: list | None) -> str:
    if goal is None:
        return ""
    held = goal.holds(value)
    if verdicts is not None:
        verdicts.append((name, held))
    return f"  [{goal}: {'holds' if held else 'NOT MET'}]"


def verdicts_line(verdicts: list) -> str:
    missed = [name for name, held in verdicts if not held]
    return f"goals: {len(verdicts) - len(missed)} of {len(verdicts)} met in this run" + (
        f"; not met: {', '.join(missed)}" if missed else "")
