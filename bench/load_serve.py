"""`digitnet serve` under load from wrk, side by side with the web framework's floor, in one run.

    python bench/load_serve.py runs/tutorial [--duration 10] [--rounds 2] [--connections 32]
    python bench/load_serve.py --docs-only      # docs/serving.md's figures from the last results

Needs `wrk` (Debian: apt-get install -y wrk). Starts on 127.0.0.1: `digitnet serve RUN` (request
log off, and once more with it on), and the floor (bench/serve_floor.py: FastAPI on the same
uvicorn, parsing the same JSON, answering a fixed answer of the same size; once with FastAPI's
own request.json(), once with orjson). Then, rounds interleaved so that drift on a shared machine
hits both sides alike:

- JSON pixels (one MNIST digit) to /predict, a 280×280 PNG drawing (what the page sends) to
  /predict, 32 digits as JSON to /predict/batch, at `--connections`;
- JSON pixels over one connection (a lone client's latency);
- an overload run: 10× the connections on digitnet alone; answers by status, the server's RSS
  sampled every half second.

Before the load, each payload's answer is checked against digitnet.load(RUN). Records req/s,
latency percentiles (wrk's), errors, server CPU seconds per request, load average; writes
bench/results/serving.json, the figures section of docs/serving.md and the README's paragraph.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "serving.json"
DOCS = ROOT / "docs" / "serving.md"
README = ROOT / "README.md"
BEGIN, END = "<!-- load_serve:begin -->", "<!-- load_serve:end -->"

WRK_LUA = r"""
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args)
  local f = io.open(args[1], "rb"); wrk.body = f:read("*a"); f:close()
  wrk.method = "POST"; wrk.headers["Content-Type"] = args[2]
  statuses = {}
end
function response(status, headers, body) statuses[status] = (statuses[status] or 0) + 1 end
function done(summary, latency, requests)
  local counts = {}
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("statuses")) do counts[k] = (counts[k] or 0) + v end
  end
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests": %d, "duration_us": %d, ', summary.requests, summary.duration))
  io.write(string.format('"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ',
                         e.connect, e.read, e.write, e.status, e.timeout))
  io.write(string.format('"latency_ms": {"p50": %.3f, "p90": %.3f, "p99": %.3f, "max": %.3f}, ',
                         latency:percentile(50) / 1000, latency:percentile(90) / 1000,
                         latency:percentile(99) / 1000, latency.max / 1000))
  io.write('"status": {')
  local first = true
  for k, v in pairs(counts) do
    if not first then io.write(", ") end
    first = false
    io.write(string.format('"%d": %d', k, v))
  end
  io.write("}}\n")
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_stat(pid: int) -> tuple[float, float]:
    """(CPU seconds, RSS MiB) of one process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    rss = int(fields[21]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    return cpu, rss


class Server:
    def __init__(self, name: str, cmd: list[str], env: dict[str, str], port: int):
        self.name, self.url = name, f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(cmd, env={**os.environ, **env}, cwd=ROOT,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def wait(self) -> None:
        import httpx

        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                httpx.get(self.url + "/health", timeout=2).raise_for_status()
                return
            except httpx.HTTPError:
                time.sleep(0.3)
        sys.exit(f"{self.name} did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def floor_server(name: str, orjson: bool) -> Server:
    """bench/serve_floor.py on a free port (JSON parsed by FastAPI's request.json(), or orjson)."""
    port = free_port()
    return Server(name, [sys.executable, "-m", "uvicorn", "bench.serve_floor:app", "--port", str(port),
                         "--http", "httptools", "--no-access-log", "--log-level", "warning"],
                  {"PYTHONPATH": str(ROOT), "DIGITNET_FLOOR_ORJSON": "1" if orjson else "0"}, port)


def servers(run: str) -> dict[str, Server]:
    src = {"PYTHONPATH": str(ROOT / "src")}
    made = {}
    for name, log in (("digitnet", ["--no-access-log"]), ("digitnet, request log on", [])):
        port = free_port()
        made[name] = Server(name, [sys.executable, "-m", "digitnet", "serve", run, "--port", str(port),
                                   *log], src, port)
    for name, orjson in (("floor", False), ("floor, orjson", True)):
        made[name] = floor_server(name, orjson)
    for server in made.values():
        server.wait()
    return made


def payloads(run: str, workdir: Path) -> dict[str, tuple[Path, str, object]]:
    """name → (body file, content type, expected labels), from MNIST test digits."""
    from PIL import Image

    import digitnet

    ds = digitnet.load_dataset()
    model = digitnet.load(run)
    digit = ds.x_test[0]
    page = Image.new("L", (280, 280), 255)
    page.paste(Image.fromarray(255 - digit).resize((200, 200)), (40, 40))
    buf = io.BytesIO()
    page.save(buf, "PNG")
    batch = ds.x_test[:32]
    out = {}
    for name, body, ctype, expected in (
            ("json", json.dumps({"pixels": digit.reshape(-1).tolist()}).encode(), "application/json",
             int(model.predict(digit[None])[0])),
            ("png", buf.getvalue(), "image/png", 7),
            ("batch", json.dumps({"pixels": [d.reshape(-1).tolist() for d in batch]}).encode(),
             "application/json", model.predict(batch).tolist())):
        path = workdir / f"{name}.body"
        path.write_bytes(body)
        out[name] = (path, ctype, expected)
    return out


def check_answers(url: str, items: dict[str, tuple[Path, str, object]]) -> None:
    import httpx

    for name, (path, ctype, expected) in items.items():
        route = "/predict/batch" if name == "batch" else "/predict"
        r = httpx.post(url + route, content=path.read_bytes(), headers={"content-type": ctype}, timeout=30)
        r.raise_for_status()
        doc = r.json()
        got = [p["label"] for p in doc["predictions"]] if name == "batch" else doc["label"]
        if got != expected:
            sys.exit(f"{name}: digitnet answered {got}, the library {expected}")


def wrk(url: str, route: str, body: tuple[Path, str, object], connections: int, threads: int,
        duration: float, lua: Path, pid: int | None = None) -> dict:
    cmd = ["wrk", "-t", str(min(threads, connections)), "-c", str(connections), "-d", f"{int(duration)}s",
           "--timeout", "10s", "-s", str(lua), url + route, "--", str(body[0]), body[1]]
    before = proc_stat(pid) if pid else None
    rss: list[float] = []
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while proc.poll() is None:
        if pid:
            rss.append(round(proc_stat(pid)[1], 1))
        time.sleep(0.5)
    out, err = proc.communicate()
    line = next((ln for ln in out.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is None:
        sys.exit(f"wrk failed: {out}\n{err}")
    result = json.loads(line.removeprefix("WRKJSON "))
    result["req_per_s"] = round(result["requests"] / (result["duration_us"] / 1e6), 1)
    result["5xx"] = sum(v for k, v in result["status"].items() if k.startswith("5"))
    result["transport_errors"] = sum(v for k, v in result["errors"].items() if k != "status")
    if before is not None:
        after = proc_stat(pid)
        result["server_cpu_s"] = round(after[0] - before[0], 2)
        per = (after[0] - before[0]) / max(1, result["requests"])
        result["server_cpu_us_per_request"] = round(per * 1e6, 1)
        result["rss_mib"] = rss
    return result


def forward_paths(run: str) -> list[dict]:
    from digitnet.serve.predictor import Predictor, time_paths

    return time_paths(Predictor(run, 256), [1, 2, 8, 32, 128, 256])


def measure(args: argparse.Namespace) -> dict:
    if not shutil.which("wrk"):
        sys.exit("bench/load_serve.py needs wrk: apt-get install -y wrk")
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    from digitnet.tuning import machine

    m = machine()
    result: dict = {"started": started, "load_average_start": os.getloadavg(), "cpus": os.cpu_count(),
                    "machine": {"cpu": m["cpu"], "cpu_id": m.get("cpu_id"), "cores": m["cores"]},
                    "command": "python bench/load_serve.py " + " ".join(sys.argv[1:]),
                    "settings": {k: getattr(args, k) for k in ("duration", "rounds", "connections",
                                                               "threads", "overload")},
                    "forward_us": forward_paths(args.run)}
    workdir = Path(tempfile.mkdtemp(prefix="load-serve-"))
    lua = workdir / "post.lua"
    lua.write_text(WRK_LUA)
    items = payloads(args.run, workdir)
    made = servers(args.run)
    try:
        check_answers(made["digitnet"].url, items)
        plan = [("json", "/predict", args.connections, ["floor", "floor, orjson", "digitnet",
                                                        "digitnet, request log on"]),
                ("png", "/predict", args.connections, ["floor", "digitnet"]),
                ("batch", "/predict/batch", args.connections, ["floor", "digitnet"]),
                ("json, one connection", "/predict", 1, ["floor", "digitnet"])]
        for server in made.values():  # warm-up
            wrk(server.url, "/predict", items["json"], args.connections, args.threads, 2, lua)
        runs: dict = {}
        for rnd in range(args.rounds):
            for scenario, route, conns, names in plan:
                body = items[scenario.split(",")[0]]
                for name in names:
                    r = wrk(made[name].url, route, body, conns, args.threads, args.duration, lua,
                            made[name].proc.pid)
                    r.pop("rss_mib", None)
                    runs.setdefault(scenario, {}).setdefault(name, []).append(r)
                    print(f"round {rnd + 1} {scenario:>22} {name:>26}: {r['req_per_s']:8.1f} req/s  "
                          f"p50 {r['latency_ms']['p50']:6.2f} ms  p99 {r['latency_ms']['p99']:6.2f} ms  "
                          f"{r['server_cpu_us_per_request']:6.1f} CPU µs/req  status {r['status']}",
                          flush=True)
        result["runs"] = runs
        dn = made["digitnet"]
        conns = args.connections * args.overload
        before = proc_stat(dn.proc.pid)[1]
        over = wrk(dn.url, "/predict", items["json"], conns, args.threads, args.duration * 2, lua,
                   dn.proc.pid)
        over["connections"] = conns
        over["rss_before_mib"] = round(before, 1)
        over["rss_after_mib"] = round(proc_stat(dn.proc.pid)[1], 1)
        result["overload"] = over
        print(f"overload at {conns} connections: {over['req_per_s']} req/s, status {over['status']}, "
              f"RSS {min(over['rss_mib'])}–{max(over['rss_mib'])} MiB", flush=True)
        fl = made["floor"]
        result["overload_floor"] = wrk(fl.url, "/predict", items["json"], conns, args.threads,
                                       args.duration * 2, lua, fl.proc.pid)
        result["overload_floor"].pop("rss_mib")
        check_answers(dn.url, items)  # still right afterwards
    finally:
        for server in made.values():
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    result["load_average_end"] = os.getloadavg()
    return result


def summary(runs: list[dict]) -> dict:
    """Over rounds: mean req/s, the worst p50/p99, all errors added up."""
    return {"req_per_s": round(sum(r["req_per_s"] for r in runs) / len(runs), 1),
            "p50": max(r["latency_ms"]["p50"] for r in runs),
            "p99": max(r["latency_ms"]["p99"] for r in runs),
            "cpu_us": round(sum(r["server_cpu_us_per_request"] for r in runs) / len(runs), 1),
            "non_2xx": sum(r["errors"]["status"] for r in runs),
            "transport_errors": sum(r["transport_errors"] for r in runs),
            "per_round": [r["req_per_s"] for r in runs]}


def busy(load: float) -> str:
    """A note when other work was running as the bench started (a 1-minute load above 1 per 2 cores)."""
    return " shared with other jobs" if load > 1.5 else ""


def markdown(res: dict) -> str:
    s = res["settings"]
    la = res["load_average_start"]
    lines = [BEGIN, "",
             f"Run of {res['started']} on {where(res)}{busy(la[0])} (load average "
             f"{la[0]:.2f} at the start, {res['load_average_end'][0]:.2f} at the end), wrk with "
             f"{s['threads']} threads on the same cores, {s['rounds']} interleaved rounds of "
             f"{s['duration']} s per line "
             "(req/s: their mean; p50/p99: the worse round; CPU: the server process's CPU time per request). "
             f"Command: `{res['command']}`; raw figures in `bench/results/serving.json`.", "",
             "| payload | server | connections | req/s | × floor | p50 ms | p99 ms | CPU µs/req | errors |",
             "|---|---|---|---|---|---|---|---|---|"]
    for scenario, by_server in res["runs"].items():
        conns = 1 if "one connection" in scenario else s["connections"]
        floor = summary(by_server["floor"])["req_per_s"]
        for name, runs in by_server.items():
            m = summary(runs)
            errors = m["non_2xx"] + m["transport_errors"]
            lines.append(f"| {scenario} | {name} | {conns} | {m['req_per_s']:,.0f} | "
                         f"{m['req_per_s'] / floor:.2f} | {m['p50']:.1f} | {m['p99']:.1f} | "
                         f"{m['cpu_us']:.0f} | {errors} |")
    o = res["overload"]
    lines += ["", f"Overload, JSON pixels at {o['connections']} connections ({s['overload']}× the above) "
              f"for {2 * s['duration']} s: {o['req_per_s']:,.0f} req/s answered, status counts "
              f"{json.dumps(o['status'])}, {o['5xx']} 5xx, {o['transport_errors']} transport errors; "
              f"p50 {o['latency_ms']['p50']:.1f} ms, p99 {o['latency_ms']['p99']:.1f} ms. Server RSS: "
              f"{o['rss_before_mib']} MiB before, {min(o['rss_mib'])}–{max(o['rss_mib'])} MiB sampled every "
              f"0.5 s during the run, {o['rss_after_mib']} MiB after."]
    if "overload_floor" in res:
        f = res["overload_floor"]
        lines[-1] += (f" The floor, for comparison, at the same connections: {f['req_per_s']:,.0f} req/s, "
                      f"status counts {json.dumps(f['status'])}, {f['transport_errors']} transport errors, "
                      f"p50 {f['latency_ms']['p50']:.1f} ms, p99 {f['latency_ms']['p99']:.1f} ms.")
    lines += ["",
              "Forward pass alone (median µs per call, in the bench process; probabilities' largest "
              "difference between the two paths):", "",
              "| rows | compiled JAX | NumPy | max abs diff |", "|---|---|---|---|"]
    for f in res["forward_us"]:
        lines.append(f"| {f['batch']} | {f['jax_us']:.0f} | {f.get('numpy_us', float('nan')):.0f} | "
                     f"{f.get('max_abs_diff', float('nan')):.1e} |")
    lines += ["", END]
    return "\n".join(lines)


def where(res: dict) -> str:
    """The machine of a run: "a 2-core Intel(R) Xeon(R) Processor (GenuineIntel/6/167/1)"
    (results from before the machine was recorded: "this 2-core machine")."""
    m = res.get("machine")
    if not m:
        return "this 2-core machine"
    return f"a {m['cores']}-core {m['cpu']}" + (f" ({m['cpu_id']})" if m.get("cpu_id") else "")


def readme(res: dict) -> str:
    """The README's paragraph: the headline figures of the same run."""
    s, o = res["settings"], res["overload"]
    json_ = {name: summary(runs) for name, runs in res["runs"]["json"].items()}
    png, batch = summary(res["runs"]["png"]["digitnet"]), summary(res["runs"]["batch"]["digitnet"])
    dn, fl, fo = json_["digitnet"], json_["floor"], json_["floor, orjson"]
    la = res["load_average_start"][0]
    return "\n".join([
        BEGIN,
        f"Load ({res['started']}, `python bench/load_serve.py runs/tutorial`; wrk, {s['connections']} "
        f"connections, on {where(res)}{busy(la)}, load average {la:.1f}): one digit "
        f"as JSON pixels, **{dn['req_per_s']:,.0f} req/s, {dn['req_per_s'] / fl['req_per_s']:.2f}× the "
        f"framework's floor** in the same run (FastAPI parsing the same JSON and answering a fixed answer: "
        f"{fl['req_per_s']:,.0f} req/s; {fo['req_per_s']:,.0f} with orjson), p50 {dn['p50']:.1f} ms, p99 "
        f"{dn['p99']:.1f} ms, {dn['non_2xx'] + dn['transport_errors']} errors; server CPU per request "
        f"{dn['cpu_us']:.0f} µs against the floor's {fl['cpu_us']:.0f} ({fo['cpu_us']:.0f} with orjson). "
        f"A 280×280 PNG drawing: {png['req_per_s']:,.0f} req/s ({png['cpu_us'] / 1000:.1f} ms of server CPU "
        f"each); 32 digits to /predict/batch: "
        f"{batch['req_per_s']:,.0f} req/s. At {o['connections']} connections: "
        f"{o['status'].get('429', 0):,} answers 429 and {o['status'].get('200', 0):,} 200, {o['5xx']} 5xx, "
        f"server RSS {min(o['rss_mib'])}–{max(o['rss_mib'])} MiB. Details: `docs/serving.md`.",
        END])


def replace_block(path: Path, block: str) -> None:
    text = path.read_text()
    if BEGIN in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text += "\n" + block + "\n"
    path.write_text(text)


def write_docs(res: dict) -> None:
    replace_block(DOCS, markdown(res))
    replace_block(README, readme(res))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", nargs="?", help="run directory to serve")
    ap.add_argument("--duration", type=float, default=10, help="seconds per wrk run (default 10)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    ap.add_argument("--overload", type=int, default=10, help="overload connections, × --connections")
    ap.add_argument("--docs-only", action="store_true", help="rewrite docs/serving.md from the last results")
    args = ap.parse_args()
    if args.docs_only:
        write_docs(json.loads(RESULTS.read_text()))
        return
    if not args.run:
        ap.error("give a run directory")
    res = measure(args)
    RESULTS.write_text(json.dumps(res, indent=1) + "\n")
    write_docs(res)
    print(f"wrote {RESULTS.relative_to(ROOT)} and {DOCS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
