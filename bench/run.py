#!/usr/bin/env python3
"""netgraph side by side with nethogs and bandwhich, same workloads, same run.

Builds a namespace lab (a, b joined by a veth pair), then for every workload runs it
once per monitor (no monitor first, as the baseline) and measures:
  - bytes the monitor gave to the workload's process, against nftables counters (the
    IP-layer truth); bytes it left unattributed;
  - the monitor's CPU time (user + system, all threads) and peak resident memory;
  - the workload's throughput next to the baseline's.
Writes bench/results/<date>.json and .md, and bench/results/latest.md.

Usage: sudo bench/run.py [--seconds 10] [--short-lived 300] [--only WORKLOAD]
                        [--monitors netgraph-ebpf,nethogs] [--repeat 3]
Monitors: netgraph-ebpf, netgraph-capture, capture-floor (the capture engine's ring read
with nothing done per packet: the least capturing this way costs), nethogs (as it
starts: TCP only), nethogs-C (TCP and UDP), bandwhich. The idle workload (no traffic, as long as the others) gives
each monitor's cost of running at all, so that CPU per packet is what packets add.
--repeat runs every monitor (and the baseline) that many rounds, interleaved, and the
tables give the median of each figure: a shared VM's noise evens out.
Installs what it needs first: the build and lab packages, nethogs from Debian and
bandwhich from crates.io (into /opt/bandwhich); --no-install skips that, and a
missing peer is then skipped and says so in the results.
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NETGRAPH = ROOT / "target/dist/netgraph"
EXAMPLES = ROOT / "target/dist/examples"
LABTRAFFIC = EXAMPLES / "labtraffic"
A, B = "ngbench-a", "ngbench-b"
VA, VB = "ngbva", "ngbvb"
A4, B4 = "10.211.0.1", "10.211.0.2"
TICKS = os.sysconf("SC_CLK_TCK")
ETHERNET_HEADER = 14
PEERS = ("nethogs", "nethogs-C", "bandwhich")
FLOOD = "udp-flood-64B"


def sh(*args, check=True, **kwargs):
    return subprocess.run(args, check=check, capture_output=True, text=True, **kwargs)


def in_ns(ns, *args):
    return ["ip", "netns", "exec", ns, *args]


class Lab:
    def __init__(self, workdir):
        self.dir = Path(workdir)
        self.servers = []
        self.teardown()
        for ns in (A, B):
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "link", "add", VA, "type", "veth", "peer", "name", VB)
        for dev, ns, host in ((VA, A, A4), (VB, B, B4)):
            sh("ip", "link", "set", dev, "netns", ns)
            sh("ip", "-n", ns, "addr", "add", f"{host}/24", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")

    def teardown(self):
        for server in getattr(self, "servers", []):
            server.kill()
            server.wait()
        for ns in (A, B):
            sh("ip", "netns", "del", ns, check=False)

    def tool(self, name):
        path = self.dir / name
        if not path.exists():
            shutil.copy(LABTRAFFIC, path)
        return str(path)

    def serve(self, ns, name, *args):
        server = subprocess.Popen(in_ns(ns, self.tool(name), *args), stdout=subprocess.PIPE, text=True)
        assert server.stdout.readline().strip() == "listening", f"{name} did not start"
        self.servers.append(server)
        return server

    def stop_servers(self):
        for server in self.servers:
            server.kill()
            server.wait()
        self.servers = []

    def truth(self, port, proto):
        """Counters for the workload's packets from a (sent) and to a (received)."""
        rules = (
            "table inet truth {\n counter sent { }\n counter received { }\n"
            f" chain output {{ type filter hook output priority 0; policy accept;\n  {proto} dport {port} counter name sent\n }}\n"
            f" chain input {{ type filter hook input priority 0; policy accept;\n  {proto} sport {port} counter name received\n }}\n}}\n"
        )
        sh("ip", "netns", "exec", A, "nft", "delete", "table", "inet", "truth", check=False)
        subprocess.run(in_ns(A, "nft", "-f", "-"), input=rules, text=True, check=True)

    def truth_counts(self, name):
        out = json.loads(sh(*in_ns(A, "nft", "-j", "list", "counter", "inet", "truth", name)).stdout)
        counter = next(item["counter"] for item in out["nftables"] if "counter" in item)
        return counter["bytes"], counter["packets"]


def cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def peak_rss_mb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Monitor:
    """A monitor process, and how to read what it attributed."""

    name = "none"
    unit = "-"

    def command(self):
        return None

    def start(self, workdir):
        command = self.command()
        if command is None:
            self.process = None
            return
        self.output = open(workdir / f"{self.name}.out", "w+")
        # The store goes into the scratch directory, not the host's /var/lib/netgraph.
        env = dict(os.environ, STATE_DIRECTORY=str(workdir / f"{self.name}.state"))
        self.process = subprocess.Popen(command, stdout=self.output, stderr=subprocess.STDOUT, env=env)
        time.sleep(self.warmup)

    def pid(self):
        """The monitor's own pid (behind `ip netns exec`, which execs it)."""
        return self.process.pid

    def stop(self):
        if self.process is None:
            return {}
        pid = self.pid()
        cpu, rss = cpu_seconds(pid), peak_rss_mb(pid)
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.output.seek(0)
        text = self.output.read()
        if os.environ.get("BENCH_KEEP_OUTPUT"):
            shutil.copy(self.output.name, os.environ["BENCH_KEEP_OUTPUT"])
        return {"cpu_s": cpu, "peak_rss_mb": rss, "text": text}


class Netgraph(Monitor):
    warmup = 1.5
    unit = "IP-layer bytes"

    def __init__(self, engine):
        self.engine = engine
        self.name = f"netgraph-{engine}"

    def command(self):
        # Its default daemon (store and page on), plus JSON lines to score it by.
        run = [str(NETGRAPH), "run", "--engine", self.engine, "--interval", "1s", "--json"]
        if self.engine == "capture":
            return in_ns(A, *run, "-i", VA)
        return run  # the eBPF engine sees every namespace from the host's

    def attributed(self, text, process, direction):
        named = unknown = 0
        for line in text.splitlines():
            if not line.startswith("{"):
                continue
            row = json.loads(line)
            if row.get("type") != "process" or row.get("interface") != VA:
                continue
            value = row["sent_bytes_last" if direction == "sent" else "recv_bytes_last"]
            if row["name"] == process:
                named += value
            elif not row["attributed"]:
                unknown += value
        return named, unknown


class Nethogs(Monitor):
    """nethogs as it starts by default: it counts TCP only."""

    name = "nethogs"
    options = []
    warmup = 2.0
    unit = "frames (IP + 14-byte Ethernet header)"

    def command(self):
        return in_ns(A, "nethogs", *self.options, "-t", "-v", "2", "-d", "1", VA)

    def attributed(self, text, process, direction):
        # Trace lines: "exe/pid/uid<TAB>sent<TAB>received", cumulative; keep each's maximum.
        column = 1 if direction == "sent" else 2
        best = {}
        for line in text.splitlines():
            parts = line.split("\t")
            if len(parts) == 3:
                try:
                    best[parts[0]] = max(best.get(parts[0], 0), float(parts[column]))
                except ValueError:
                    pass
        named = sum(v for k, v in best.items() if f"/{process}/" in k)
        unknown = sum(v for k, v in best.items() if k.startswith("unknown"))
        return int(named), int(unknown)


class NethogsUdp(Nethogs):
    """nethogs -C: TCP and UDP, the like-for-like peer on UDP workloads."""

    name = "nethogs-C"
    options = ["-C"]


class Bandwhich(Monitor):
    name = "bandwhich"
    warmup = 2.0
    unit = "transport payload bytes (per-second rates, summed)"

    def __init__(self, binary):
        self.binary = binary

    def command(self):
        return in_ns(A, self.binary, "--raw", "--no-resolve", "--interface", VA)

    def attributed(self, text, process, direction):
        # Raw lines: process: <time> "name" up/down Bps: 123/456 ..., one per refresh (1 s).
        pattern = re.compile(r'^process: <\d+> "(?P<name>[^"]*)" up/down B(?:ps|ytes): (?P<up>\d+)/(?P<down>\d+)')
        named = unknown = 0
        for line in text.splitlines():
            match = pattern.match(line)
            if not match:
                continue
            value = int(match["up"] if direction == "sent" else match["down"])
            if match["name"] == process:
                named += value
            elif "UNKNOWN" in match["name"].upper():
                unknown += value
        return named, unknown


class CaptureFloor(Monitor):
    """The capture engine's ring read as its threads read it, with nothing done per
    packet (examples/capture_floor.rs): what capturing this way costs at least."""

    name = "capture-floor"
    warmup = 1.5

    def command(self):
        return in_ns(A, str(EXAMPLES / "capture_floor"), VA)

    def attributed(self, text, process, direction):
        return None, None


def printed_bytes(output):
    match = re.search(r"bytes=(\d+)", output)
    return int(match.group(1)) if match else 0


def workloads(seconds, short_lived):
    s = str(seconds)
    return [
        {"name": "idle", "port": 6100, "proto": "udp", "direction": "sent", "process": "ng-idle",
         "server": None, "client": None, "seconds": seconds},
        {"name": "tcp-upload", "port": 6101, "proto": "tcp", "direction": "sent", "process": "ng-up",
         "server": ("ng-sink", "tcp-sink", f"{B4}:6101"), "client": ["tcp-send", f"{B4}:6101", f"{s}s"]},
        {"name": "tcp-download", "port": 6102, "proto": "tcp", "direction": "received", "process": "ng-down",
         "server": ("ng-src", "tcp-source", f"{B4}:6102", s), "client": ["tcp-recv", f"{B4}:6102"]},
        {"name": "udp-flood-64B", "port": 6103, "proto": "udp", "direction": "sent", "process": "ng-flood",
         "server": ("ng-usink", "udp-sink", f"{B4}:6103", "mmsg"), "client": ["udp-flood", f"{B4}:6103", s, "64", "mmsg"]},
        {"name": f"short-lived-{short_lived}x200kB", "port": 6104, "proto": "tcp", "direction": "sent", "process": "ng-short",
         "server": ("ng-sink", "tcp-sink", f"{B4}:6104"), "client": ["short-lived", f"{B4}:6104", str(short_lived), "200000"]},
        {"name": "1000-connections", "port": 6105, "proto": "tcp", "direction": "sent", "process": "ng-many",
         "server": ("ng-sink", "tcp-sink", f"{B4}:6105"), "client": ["tcp-many", f"{B4}:6105", "1000", s]},
    ]


def run_one(lab, workload, monitor, workdir):
    server = workload["server"]
    if server:
        lab.serve(B, server[0], *server[1:])
    lab.truth(workload["port"], workload["proto"])
    monitor.start(workdir)
    started = time.monotonic()
    if workload["client"]:
        client = subprocess.run(in_ns(A, lab.tool(workload["process"]), *workload["client"]),
                                capture_output=True, text=True, timeout=600)
    else:  # idle: the monitor runs as long as a workload would, with no traffic
        time.sleep(workload["seconds"])
        client = subprocess.CompletedProcess([], 0, "", "")
    elapsed = time.monotonic() - started
    time.sleep(2.5)  # the monitors' last interval
    result = monitor.stop()
    lab.stop_servers()
    truth_bytes, truth_packets = lab.truth_counts("sent" if workload["direction"] == "sent" else "received")
    moved = printed_bytes(client.stdout)
    row = {"workload": workload["name"], "monitor": monitor.name, "elapsed_s": round(elapsed, 2),
           "payload_bytes": moved, "throughput_MBps": round(moved / elapsed / 1e6, 1),
           "truth_bytes": truth_bytes, "truth_packets": truth_packets}
    if result:
        named, unknown = monitor.attributed(result["text"], workload["process"], workload["direction"])
        if named is None:  # a floor, which names nothing
            named = unknown = 0
            truth = None
        # Compare like with like: frames against frame truth, payload against payload.
        if isinstance(monitor, CaptureFloor):
            pass
        elif isinstance(monitor, Nethogs):
            truth = truth_bytes + ETHERNET_HEADER * truth_packets
        elif isinstance(monitor, Bandwhich):
            truth = moved
        else:
            truth = truth_bytes
        row.update({"unit": monitor.unit, "attributed_bytes": named, "unattributed_bytes": unknown,
                    "attributed_pct": round(100 * named / truth, 2) if truth else None,
                    "cpu_s": round(result["cpu_s"], 2), "peak_rss_mb": round(result["peak_rss_mb"], 1)})
    return row


def median(values):
    values = sorted(values)
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2


def medians(rows):
    """One row per (workload, monitor): the median of each figure over the rounds."""
    merged = {}
    for r in rows:
        merged.setdefault((r["workload"], r["monitor"]), []).append(r)
    result = []
    for runs in merged.values():
        row = dict(runs[0])
        for field in ("throughput_MBps", "attributed_pct", "unattributed_bytes", "cpu_s", "peak_rss_mb",
                      "truth_packets"):
            values = [r[field] for r in runs if r.get(field) is not None]
            if values:
                row[field] = round(median(values), 2)
        row["rounds"] = len(runs)
        result.append(row)
    return result


def markdown(rows, meta):
    rows = medians(rows)
    lines = [f"# netgraph benchmark, {meta['date']}", "",
             f"Machine: {meta['machine']}; kernel {meta['kernel']}; {meta['cpus']} CPUs. Versions: {meta['versions']}.", "",
             "| workload | monitor | attributed | unattributed | monitor CPU s | peak RSS MB | throughput vs baseline |",
             "|---|---|---|---|---|---|---|"]
    if meta.get("repeat", 1) > 1:
        lines.insert(3, f"Each figure is the median of {meta['repeat']} interleaved rounds.\n")
    # The baseline runs first and last in every round; the median evens out a cold
    # start or a busy neighbour.
    baseline = {r["workload"]: r["throughput_MBps"] for r in rows if r["monitor"] == "none"}
    for r in rows:
        if r["monitor"] == "none":
            continue
        base = baseline.get(r["workload"]) or 0
        ratio = f"{100 * r['throughput_MBps'] / base:.1f}%" if base else "-"
        attributed = f"{r['attributed_pct']}%" if r.get("attributed_pct") is not None else "-"
        lines.append(f"| {r['workload']} | {r['monitor']} | {attributed} | {r['unattributed_bytes']:,} B | "
                     f"{r['cpu_s']} | {r['peak_rss_mb']} | {ratio} |")
    lines += ["", "Units, each against its own truth: netgraph counts IP-layer bytes (truth: nftables counters); "
              "nethogs counts whole frames (truth: nftables bytes plus the 14-byte Ethernet header per packet); "
              "bandwhich counts transport payload (truth: the payload the workload itself reports).",
              "The workload's own throughput is its payload per second; short-lived runs are sequential process starts."]
    for note in meta["notes"]:
        lines.append(f"- {note}")
    lines += per_packet(rows)
    # Ratios against the best peer on the same run.
    lines += ["", "## netgraph (eBPF) against the best peer", "",
              "| workload | attributed: netgraph / best peer | CPU: netgraph / best peer |", "|---|---|---|"]
    for workload in dict.fromkeys(r["workload"] for r in rows):
        if workload == "idle":
            continue
        ours = next((r for r in rows if r["workload"] == workload and r["monitor"] == "netgraph-ebpf"), None)
        peers = [r for r in rows if r["workload"] == workload and r["monitor"] in PEERS]
        if not ours or not peers:
            continue
        # Closest to the truth: counting more than the wire carried is no better.
        best = min(peers, key=lambda r: abs(100 - (r["attributed_pct"] or 0)))
        cheapest = min(peers, key=lambda r: r["cpu_s"])
        lines.append(f"| {workload} | {ours['attributed_pct']}% vs {best['attributed_pct']}% ({best['monitor']}) | "
                     f"{ours['cpu_s']} s vs {cheapest['cpu_s']} s ({cheapest['monitor']}) |")
    return "\n".join(lines) + "\n"


def per_packet(rows):
    """CPU per packet on the flood: all of it, and what the packets added to idling."""
    idle = {r["monitor"]: r["cpu_s"] for r in rows if r["workload"] == "idle" and r.get("cpu_s") is not None}
    flood = [r for r in rows if r["workload"] == FLOOD and r.get("cpu_s") is not None and r["truth_packets"]]
    if not flood:
        return []
    lines = ["", f"## CPU per packet on the {FLOOD} flood", "",
             "| monitor | attributed | CPU s | idle CPU s | ns per packet | ns per packet above idle |",
             "|---|---|---|---|---|---|"]
    for r in flood:
        packets = r["truth_packets"]
        rest = idle.get(r["monitor"])
        above = f"{1e9 * (r['cpu_s'] - rest) / packets:.0f}" if rest is not None else "-"
        attributed = f"{r['attributed_pct']}%" if r.get("attributed_pct") is not None else "-"
        lines.append(f"| {r['monitor']} | {attributed} | {r['cpu_s']} | {rest if rest is not None else '-'} | "
                     f"{1e9 * r['cpu_s'] / packets:.0f} | {above} |")
    lines.append("Idle CPU: the same monitor over the same time with no traffic (the idle workload).")
    return lines


def install_tools():
    """The packages the lab and the peers need, and bandwhich, which Debian lacks."""
    subprocess.run(["bash", "-c", '. scripts/deps.sh && install_packages "${BUILD_PACKAGES[@]}" iproute2 nftables nethogs'],
                   cwd=ROOT, check=True)
    if not shutil.which("bandwhich") and not Path("/opt/bandwhich/bin/bandwhich").exists():
        print("installing bandwhich from crates.io into /opt/bandwhich", file=sys.stderr)
        subprocess.run(["cargo", "install", "--quiet", "--locked", "bandwhich", "--root", "/opt/bandwhich"], check=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--short-lived", type=int, default=300)
    parser.add_argument("--only", help="run only these workloads (comma-separated)")
    parser.add_argument("--no-build", action="store_true")
    parser.add_argument("--no-install", action="store_true")
    parser.add_argument("--monitors", help="comma-separated: netgraph-ebpf, netgraph-capture, nethogs, bandwhich")
    parser.add_argument("--repeat", type=int, default=1, help="rounds per workload; medians are reported")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/run.py needs root (network namespaces, capture, eBPF): sudo bench/run.py")
    if not args.no_install:
        install_tools()
    if not args.no_build:
        subprocess.run(["cargo", "build", "--profile", "dist", "--bins", "--examples", "--quiet"], cwd=ROOT, check=True)

    notes = []
    monitors = [Monitor(), Netgraph("ebpf"), Netgraph("capture"), CaptureFloor()]
    if shutil.which("nethogs"):
        monitors += [Nethogs(), NethogsUdp()]
    else:
        notes.append("nethogs SKIPPED: not installed (apt-get install nethogs)")
    bandwhich = shutil.which("bandwhich") or next((p for p in ["/opt/bandwhich/bin/bandwhich", str(Path.home() / ".cargo/bin/bandwhich")] if Path(p).exists()), None)
    if bandwhich:
        monitors.append(Bandwhich(bandwhich))
    else:
        notes.append("bandwhich SKIPPED: not installed (cargo install bandwhich)")

    if args.monitors:
        wanted = set(args.monitors.split(","))
        unknown = wanted - {m.name for m in monitors}
        if unknown:
            sys.exit(f"unknown or unavailable monitors: {', '.join(sorted(unknown))}")
        monitors = [m for m in monitors if m.name == "none" or m.name in wanted]

    def version(command):
        try:
            return sh(*command, check=False).stdout.strip().splitlines()[0]
        except (IndexError, FileNotFoundError):
            return "?"

    meta = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": platform.node(), "kernel": platform.release(), "cpus": os.cpu_count(),
            "versions": ", ".join(filter(None, [version([str(NETGRAPH), "--version"]),
                                                "nethogs " + version(["dpkg-query", "-W", "-f=${Version}", "nethogs"]) if shutil.which("nethogs") else "",
                                                version([bandwhich, "--version"]) if bandwhich else ""])),
            "notes": notes, "repeat": args.repeat}
    rows = []
    with tempfile.TemporaryDirectory(prefix="netgraph-bench-") as workdir:
        lab = Lab(workdir)
        try:
            for workload in workloads(args.seconds, args.short_lived):
                if args.only and workload["name"] not in args.only.split(","):
                    continue
                for round_number in range(args.repeat):
                    for monitor in monitors + [Monitor()]:
                        row = run_one(lab, workload, monitor, Path(workdir))
                        row["round"] = round_number
                        print(json.dumps(row), flush=True)
                        rows.append(row)
        finally:
            lab.teardown()
    results = ROOT / "bench/results"
    results.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M")
    (results / f"{stamp}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    table = markdown(rows, meta)
    (results / f"{stamp}.md").write_text(table)
    (results / "latest.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
