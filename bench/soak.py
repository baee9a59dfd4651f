#!/usr/bin/env python3
"""netgraph under an hour of mixed load: does its memory level off?

Runs netgraph (eBPF engine, its embedded store with peers and a small size bound, the
page's API, an InfluxDB 1.x sink) on this host while loopback carries, all at once:
  - bulk: 20 MB TCP transfers, one after another;
  - churn: 200 short-lived processes of 5 connections every 10 s;
  - DNS: queries to a dnsmasq on 127.0.0.77:53 for names it answers (soak.test);
  - peers: UDP datagrams to 500 new loopback addresses every 10 s (a scanner);
  - readers: the page's totals and history queries every 5 s.
Every 10 s it samples netgraph's resident memory and open descriptors. The verdict:
memory plateaus when the last third's peak is within 5% (or 2 MiB) of the middle
third's; descriptors must not grow. Writes bench/results/<date>-soak.md and .json.

Usage: bench/soak.py [--seconds 3600] [--no-build]
Needs root, influxd and dnsmasq (scripts/test.sh installs both).
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NETGRAPH = ROOT / "target/dist/netgraph"
LABTRAFFIC = ROOT / "target/dist/examples/labtraffic"
TOKEN = "soak-token-0123456789abcdef"
DNS_SERVER = "127.0.0.77"
SAMPLE_EVERY = 10


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args, log, **kwargs):
    return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, **kwargs)


def workload(name, workdir):
    """A copy of labtraffic named for its workload, so netgraph names it apart."""
    path = workdir / name
    shutil.copy(LABTRAFFIC, path)
    return str(path)


def influxdb(workdir):
    port = free_port()
    directory = workdir / "influxdb"
    directory.mkdir()
    config = directory / "influxdb.conf"
    config.write_text(
        f'reporting-enabled = false\nbind-address = "127.0.0.1:{free_port()}"\n'
        f'[meta]\n  dir = "{directory}/meta"\n'
        f'[data]\n  dir = "{directory}/data"\n  wal-dir = "{directory}/wal"\n  query-log-enabled = false\n'
        f"[monitor]\n  store-enabled = false\n"
        f'[http]\n  bind-address = "127.0.0.1:{port}"\n  log-enabled = false\n'
        f"[continuous_queries]\n  enabled = false\n[subscriber]\n  enabled = false\n"
    )
    process = start(["influxd", "-config", str(config)], open(directory / "log", "w"))
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(f"{url}/ping", timeout=1)
            break
        except OSError:
            time.sleep(0.2)
    urllib.request.urlopen(
        urllib.request.Request(f"{url}/query", data=b"q=CREATE DATABASE soak", method="POST"),
        timeout=5,
    )
    return process, url


def dnsmasq(workdir):
    subprocess.run(["ip", "addr", "add", f"{DNS_SERVER}/8", "dev", "lo"], capture_output=True)
    return start(
        ["dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts", "--bind-interfaces",
         f"--listen-address={DNS_SERVER}", "--port=53", "--address=/soak.test/127.0.0.99",
         "--cache-size=0", "--pid-file=" + str(workdir / "dnsmasq.pid")],
        open(workdir / "dnsmasq.log", "w"),
    )


def dns_query(name, ident):
    question = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    packet = struct.pack(">HHHHHH", ident, 0x0100, 1, 0, 0, 0) + question + struct.pack(">HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(1)
        s.sendto(packet, (DNS_SERVER, 53))
        try:
            s.recv(512)
        except OSError:
            pass


class Loads:
    """Each load a thread repeating its step until stopped; counts its rounds."""

    def __init__(self):
        self.stop = threading.Event()
        self.rounds = {}
        self.threads = []

    def every(self, name, seconds, step):
        def run():
            n = 0
            while not self.stop.is_set():
                began = time.monotonic()
                try:
                    step(n)
                    self.rounds[name] = self.rounds.get(name, 0) + 1
                except Exception as error:  # a failed round is counted, the soak goes on
                    self.rounds[name + " failed"] = self.rounds.get(name + " failed", 0) + 1
                    print(f"{name}: {error}", file=sys.stderr)
                n += 1
                self.stop.wait(max(0.0, seconds - (time.monotonic() - began)))

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self.threads.append(thread)

    def end(self):
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=5)


def api(port, path):
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/{path}", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        answer.read()


def sample(pid):
    rss_kib = threads = 0
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                rss_kib = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    return rss_kib / 1024, len(os.listdir(f"/proc/{pid}/fd")), threads


def resident_by_kind(pid):
    """Resident MiB by kind of mapping, to tell where growth sits: the main heap (brk),
    anonymous mappings (other threads' malloc arenas, large allocations), files."""
    kinds = {"heap": 0, "anon": 0, "file": 0}
    kind = "anon"
    with open(f"/proc/{pid}/smaps") as smaps:
        for line in smaps:
            fields = line.split()
            if fields and "-" in fields[0] and not fields[0].endswith(":"):
                path = fields[5] if len(fields) > 5 else ""
                kind = "heap" if path == "[heap]" else "anon" if not path or path.startswith("[") else "file"
            elif fields and fields[0] == "Rss:":
                kinds[kind] += int(fields[1])
    return {k: round(v / 1024, 1) for k, v in kinds.items()}


def verdict(samples):
    third = len(samples) // 3
    middle = max(s["rss_mib"] for s in samples[third : 2 * third])
    last = max(s["rss_mib"] for s in samples[2 * third :])
    growth = last - middle
    plateau = growth <= max(2.0, middle * 0.05)
    fds_middle = max(s["fds"] for s in samples[third : 2 * third])
    fds_last = max(s["fds"] for s in samples[2 * third :])
    return {
        "rss_middle_third_peak_mib": round(middle, 1),
        "rss_last_third_peak_mib": round(last, 1),
        "rss_growth_mib": round(growth, 1),
        "rss_plateau": plateau,
        "fds_middle_third_peak": fds_middle,
        "fds_last_third_peak": fds_last,
        "fds_steady": fds_last <= fds_middle + 2,
    }


def markdown(result):
    v = result["verdict"]
    lines = [
        f"# Soak, {result['date']}: {result['seconds']} s of mixed load",
        "",
        f"{result['machine']}. {result['netgraph']}, eBPF engine, store with peers "
        f"(max_size_mib = {result['max_size_mib']}), page API, InfluxDB 1.x sink.",
        "",
        "Load rounds: " + ", ".join(f"{k} {n}" for k, n in sorted(result["rounds"].items())) + ".",
        "",
        f"**Resident memory {'plateaus' if v['rss_plateau'] else 'does not plateau'}**: peak "
        f"{v['rss_middle_third_peak_mib']} MiB in the middle third, {v['rss_last_third_peak_mib']} MiB "
        f"in the last ({v['rss_growth_mib']:+} MiB). Descriptors "
        f"{'steady' if v['fds_steady'] else 'growing'}: peak {v['fds_middle_third_peak']} then "
        f"{v['fds_last_third_peak']}. Store files at the end: {result['store_mib']} MiB.",
        "",
        "Resident memory by kind is the last sample of each five minutes: heap is the main",
        "malloc arena, anon other threads' arenas and large allocations, file the mapped binary",
        "and libraries.",
        "",
        "| minute | RSS MiB (max) | heap | anon | file | threads (max) | descriptors (max) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    by_minute = {}
    for s in result["samples"]:
        minute = int(s["t"] // 300) * 5
        rss, fds, threads, _ = by_minute.get(minute, (0, 0, 0, None))
        by_minute[minute] = (max(rss, s["rss_mib"]), max(fds, s["fds"]), max(threads, s.get("threads", 0)), s)
    for minute, (rss, fds, threads, last) in sorted(by_minute.items()):
        kinds = " | ".join(f"{last.get(k + '_mib', 0):.1f}" for k in ("heap", "anon", "file"))
        lines.append(f"| {minute} | {rss:.1f} | {kinds} | {threads} | {fds} |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=3600)
    parser.add_argument("--max-size-mib", type=int, default=16)
    parser.add_argument("--no-build", action="store_true")
    options = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/soak.py needs root (the eBPF engine); run it as root")
    if not options.no_build:
        subprocess.run(["cargo", "build", "--profile", "dist", "--bin", "netgraph",
                        "--example", "labtraffic"], cwd=ROOT, check=True)
    workdir = Path(tempfile.mkdtemp(prefix="netgraph-soak-"))
    servers = []
    loads = Loads()
    netgraph = None
    try:
        influx, influx_url = influxdb(workdir)
        servers.append(influx)
        servers.append(dnsmasq(workdir))
        web, bulk_port, churn_port = free_port(), free_port(), free_port()
        config = workdir / "soak.toml"
        config.write_text(
            f'interval = "1s"\nstate_directory = "{workdir / "state"}"\n'
            f'[store]\nmax_size_mib = {options.max_size_mib}\n'
            f'[peers]\nenabled = true\nnames = ["dns"]\n'
            f'[web]\nlisten = "127.0.0.1:{web}"\ntoken = "{TOKEN}"\n'
            f'[[influxdb]]\nurl = "{influx_url}"\napi = "v1"\ndatabase = "soak"\n'
        )
        netgraph = start([str(NETGRAPH), "run", "--engine", "ebpf", "--config", str(config)],
                         open(workdir / "netgraph.log", "w"))
        time.sleep(3)
        if netgraph.poll() is not None:
            sys.exit("netgraph did not start:\n" + (workdir / "netgraph.log").read_text())
        sink = workload("soak-sink", workdir)
        servers.append(start([sink, "tcp-sink", f"127.0.0.1:{bulk_port}"], subprocess.DEVNULL))
        servers.append(start([sink, "tcp-sink", f"127.0.0.1:{churn_port}"], subprocess.DEVNULL))
        time.sleep(0.5)
        bulk, churn, spray = (workload(n, workdir) for n in ("soak-bulk", "soak-churn", "soak-scan"))

        def run(*args):
            subprocess.run(args, check=True, capture_output=True, timeout=120)

        loads.every("bulk", 2, lambda n: run(bulk, "tcp-send", f"127.0.0.1:{bulk_port}", "20000000"))
        loads.every("churn", 10, lambda n: run(churn, "churn", f"127.0.0.1:{churn_port}", "200", "5", "1000"))
        loads.every("dns", 1, lambda n: [dns_query(f"host{(n * 10 + i) % 5000}.soak.test", n * 10 + i & 0xFFFF)
                                          for i in range(10)])
        loads.every("scan", 10, lambda n: run(spray, "udp-spray", f"127.{1 + n // 100 % 200}.{n % 100}.1",
                                              "500", "9", "64"))
        loads.every("api", 5, lambda n: [api(web, q) for q in (
            "totals?from=-3600&group_by=process&top=20",
            "totals?from=-3600&group_by=peer&top=50",
            "history?from=-3600&group_by=process&top=8",
            "history?from=-900&group_by=domain&top=8",
        )])
        samples = []
        began = time.monotonic()
        # Ctrl-C (or SIGTERM) ends the soak early; what was sampled is still written.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        try:
            while time.monotonic() - began < options.seconds:
                if netgraph.poll() is not None:
                    sys.exit("netgraph ended during the soak:\n" + (workdir / "netgraph.log").read_text()[-4000:])
                rss, fds, threads = sample(netgraph.pid)
                kinds = resident_by_kind(netgraph.pid)
                samples.append({"t": round(time.monotonic() - began, 1), "rss_mib": round(rss, 2), "fds": fds,
                                "threads": threads, **{f"{k}_mib": v for k, v in kinds.items()}})
                print(f"{samples[-1]['t']:7.0f} s  RSS {rss:6.1f} MiB  fds {fds}  threads {threads}  "
                      f"heap {kinds['heap']} anon {kinds['anon']} file {kinds['file']} MiB", flush=True)
                time.sleep(SAMPLE_EVERY)
        except KeyboardInterrupt:
            print("ended early", flush=True)
        options.seconds = round(time.monotonic() - began)
        loads.end()
        store = workdir / "state" / "netgraph.sqlite"
        version = subprocess.run([str(NETGRAPH), "--version"], capture_output=True, text=True).stdout.strip()
        result = {
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "seconds": options.seconds,
            "machine": f"{os.cpu_count()} cores, {platform.release()}",
            "netgraph": version,
            "max_size_mib": options.max_size_mib,
            "rounds": loads.rounds,
            "store_mib": round(sum(f.stat().st_size for f in store.parent.glob(store.name + "*")) / 2**20, 1),
            "samples": samples,
            "verdict": verdict(samples),
        }
    finally:
        loads.end()
        for process in [netgraph, *servers]:
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
        subprocess.run(["ip", "addr", "del", f"{DNS_SERVER}/8", "dev", "lo"], capture_output=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M")
    results = ROOT / "bench" / "results"
    (results / f"{stamp}-soak.json").write_text(json.dumps(result, indent=1) + "\n")
    (results / f"{stamp}-soak.md").write_text(markdown(result))
    print(markdown(result))
    shutil.rmtree(workdir, ignore_errors=True)
    return 0 if result["verdict"]["rss_plateau"] and result["verdict"]["fds_steady"] else 1


if __name__ == "__main__":
    sys.exit(main())
