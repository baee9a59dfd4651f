#!/usr/bin/env python3
"""The eBPF engine's per-packet cost against the floor, in the same run.

For each workload (a 64-byte UDP flood and a bulk TCP stream, sender and receiver on
this host's loopback) and each round, in an interleaved order:
  - baseline: no program attached; the workload's throughput;
  - floor: empty programs at the same hooks (examples/bpf_floor.rs: cgroup_skb egress
    and ingress, the sock_send_length and sock_recv_length tracepoints; netgraph puts no
    tcx hook on lo, so neither does the floor here);
  - one call: the same programs each making one trivial helper call (what a program
    that asks the kernel anything pays at least: on kernels that return through a
    mitigation thunk, such as SRSO's safe RET, a call costs far more than elsewhere);
  - netgraph: `netgraph run --engine ebpf` (store and page off, as in a lean setup), on
    each path of PATHS: the best this kernel allows, and the fallbacks older or stricter
    kernels take (forced with NETGRAPH_EBPF_WITHOUT), so that a fallback is seen not to
    make the default path slower and what each costs is known.
bpf_stats (kernel.bpf_stats_enabled) gives each program's run count and run time; the
cost per packet is the run time at all hooks over the packets sent (the cgroup egress
program's runs). Tables give the median of the rounds: ns per run per hook, ns
per packet, netgraph's ratio to the floor, and the throughput kept against the
baseline. Writes bench/results/<date>-cost.json and .md, and bench/results/cost-latest.md.

With `--compare LABEL=PATH`, another netgraph build (an earlier commit's, say) runs its
default path in the same rounds as "netgraph LABEL": a change's cost is measured against
the code before it, round by round, rather than against a run at another time.
`--paths default,...` keeps only the named paths.

Usage (root, after `cargo build --profile dist --bins --examples`):
    bench/cost.py [--rounds 5] [--seconds 5] [--netgraph target/dist/netgraph]
                  [--compare before=/tmp/old/netgraph] [--paths default]
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "target/dist/examples"

# netgraph's paths: (name, NETGRAPH_EBPF_WITHOUT). "default" is what this kernel allows.
PATHS = [
    ("default", ""),
    ("no socket counts", "socket_counts"),
    ("raw tracepoints", "typed_tracepoints"),
    ("5.10-6.1 path", "socket_tracepoints,device_netns,tcx"),
    ("no tcp health", "tcp_health"),
    ("no drops", "drops"),
]
NETGRAPH_KINDS = tuple(f"netgraph {name}" for name, _ in PATHS)
MONITORS = (*NETGRAPH_KINDS, "floor", "one call")
# Other netgraph builds in the run (--compare): kind -> binary; their default path.
COMPARED = {}
# Program names per hook: netgraph's (any of its variants), the floor's, the one-call
# programs'.
# bpftool shows a longer name whole where the program's BTF has it, else cut to 15.
HOOKS = [
    ("cgroup_skb egress", ("count_egress", "count_egress_in_storage", "count_egress_in"), "f_count_egress", "c_count_egress"),
    ("cgroup_skb ingress", ("count_ingress", "count_ingress_in_storage", "count_ingress_i"), "f_count_ingress", "c_count_ingress"),
    ("tcx egress (lo)", ("interface_egress", "interface_egres"), "f_iface_egress", None),
    ("tcx ingress (lo)", ("interface_ingress", "interface_ingre"), "f_iface_ingress", None),
    ("sock_send_length", ("owner_on_send", "owner_on_send_raw", "owner_on_send_r"), "f_on_send", "c_on_send"),
    ("sock_recv_length", ("owner_on_recv", "owner_on_recv_raw", "owner_on_recv_r"), "f_on_recv", "c_on_recv"),
    # TCP health: classic tracepoints that run on retransmissions and state changes only.
    ("tcp_retransmit_skb", ("health_on_retransmit", "health_on_retra"), None, None),
    ("inet_sock_set_state", ("health_on_state",), None, None),
    # Drops: a classic tracepoint that runs for dropped packets only (a flood's receiver
    # that cannot keep up drops some: SOCKET_RCVBUFF).
    ("kfree_skb", ("drops_on_free",), None, None),
]


def hook_names(hook, kind):
    """The program names a monitor has at a hook."""
    if kind in NETGRAPH_KINDS:
        return hook[1]
    name = hook[2] if kind == "floor" else hook[3]
    return (name,) if name else ()

WORKLOADS = {
    "udp-flood-64B": ("udp-sink", ["recv"], lambda port, s: ["udp-flood", f"127.0.0.1:{port}", str(s), "64", "connected"]),
    "tcp-bulk": ("tcp-sink", [], lambda port, s: ["tcp-send", f"127.0.0.1:{port}", f"{s}s"]),
}


def programs():
    out = subprocess.run(["bpftool", "prog", "show", "-j"], check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def program_stats(ids):
    """{name: (run_cnt, run_time_ns)} of the programs `ids` (the monitor's: loaded after
    it started; bpftool here cannot show which process holds a program)."""
    return {p.get("name", ""): (p.get("run_cnt", 0), p.get("run_time_ns", 0)) for p in programs() if p["id"] in ids}


def start_monitor(kind, netgraph, workdir):
    if kind == "baseline":
        return None
    if kind in ("floor", "one call"):
        flags = ["--one-call"] if kind == "one call" else []
        process = subprocess.Popen([str(EXAMPLES / "bpf_floor"), *flags], stdout=subprocess.PIPE, text=True)
        assert process.stdout.readline().strip() == "attached", "the floor programs did not attach"
        return process
    config = workdir / "cost.toml"
    config.write_text("[store]\nenabled = false\n[web]\nenabled = false\n")
    log = open(workdir / "netgraph.log", "w+")
    without = dict((f"netgraph {name}", switch) for name, switch in PATHS).get(kind, "")
    netgraph = COMPARED.get(kind, netgraph)
    process = subprocess.Popen([netgraph, "run", "--engine", "ebpf", "--config", str(config)],
                               stdout=subprocess.DEVNULL, stderr=log,
                               env={**os.environ, "NETGRAPH_EBPF_WITHOUT": without})
    deadline = time.time() + 20
    while "netgraph running" not in (workdir / "netgraph.log").read_text():
        assert time.time() < deadline and process.poll() is None, (workdir / "netgraph.log").read_text()
        time.sleep(0.1)
    time.sleep(1)  # the interface hooks attach on the first maintenance
    return process


def run_workload(name, seconds, port):
    tool = str(EXAMPLES / "labtraffic")
    server_mode, server_args, client = WORKLOADS[name]
    server = subprocess.Popen([tool, server_mode, f"127.0.0.1:{port}", *server_args], stdout=subprocess.PIPE, text=True)
    assert server.stdout.readline().strip() == "listening"
    try:
        out = subprocess.run([tool, *client(port, seconds)], check=True, capture_output=True, text=True).stdout
    finally:
        server.kill()
        server.wait()
    sent = int(next(line.split("=")[1] for line in out.split() if line.startswith("bytes=")))
    return sent / seconds


def one_round(workload, kind, args, workdir, port):
    loaded_before = {p["id"] for p in programs()}
    monitor = start_monitor(kind, args.netgraph, workdir)
    try:
        ids = {p["id"] for p in programs()} - loaded_before
        before = program_stats(ids)
        throughput = run_workload(workload, args.seconds, port)
        after = program_stats(ids)
    finally:
        if monitor:
            monitor.terminate()
            monitor.wait()
    result = {"throughput": throughput, "hooks": {}}
    if kind == "baseline":
        return result
    packets = None
    for hook in HOOKS:
        names = hook_names(hook, kind)
        runs = sum(after.get(n, (0, 0))[0] - before.get(n, (0, 0))[0] for n in names)
        ns = sum(after.get(n, (0, 0))[1] - before.get(n, (0, 0))[1] for n in names)
        result["hooks"][hook[0]] = {"runs": runs, "ns": ns}
        if hook[0] == "cgroup_skb egress":
            packets = runs
    result["packets"] = packets
    result["ns_per_packet"] = per_packet(result)
    return result


def per_packet(result):
    """ns per packet at the hooks the floor has here too (cgroup_skb, the socket
    tracepoints): the floor attaches nothing to lo's tcx, netgraph's tcx cost is shown
    per run."""
    packets = result.get("packets")
    compared = [h["ns"] for name, h in result["hooks"].items() if not name.startswith("tcx")]
    return sum(compared) / packets if packets else None


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(results):
    summary = {}
    for workload, kinds in results.items():
        entry = {"throughput": {k: median([r["throughput"] for r in rounds]) for k, rounds in kinds.items()}}
        for kind in MONITORS:
            rounds = kinds[kind]
            entry[kind] = {
                "ns_per_packet": median([r["ns_per_packet"] for r in rounds]),
                "ns_per_run": {
                    hook[0]: median([r["hooks"][hook[0]]["ns"] / r["hooks"][hook[0]]["runs"]
                                     for r in rounds if r["hooks"][hook[0]]["runs"]])
                    for hook in HOOKS
                },
            }
        floor = entry["floor"]["ns_per_packet"]
        entry["ratio_to_floor"] = {k: entry[k]["ns_per_packet"] / floor if floor and entry[k]["ns_per_packet"] else None
                                   for k in NETGRAPH_KINDS}
        one_call = entry["one call"]["ns_per_packet"]
        entry["one_call_to_floor"] = one_call / floor if floor and one_call else None
        base = entry["throughput"]["baseline"]
        entry["throughput_kept"] = {k: v / base for k, v in entry["throughput"].items()} if base else {}
        summary[workload] = entry
    return summary


def markdown(summary, meta):
    lines = [f"# netgraph eBPF cost against the floor, {meta['date']}", "",
             f"Machine: {meta['machine']}; kernel {meta['kernel']}; {meta['cpus']} CPUs. netgraph {meta['commit']}.",
             f"Median of {meta['rounds']} interleaved rounds of {meta['seconds']} s each; loopback, sender and receiver on this host; bpf_stats on in every round.",
             ""]
    for workload, entry in summary.items():
        lines += [f"## {workload}", "", "| hook | " + " | ".join(f"{k} ns/run" for k in MONITORS) + " |",
                  "|---|" + "---|" * len(MONITORS)]
        for hook in HOOKS:
            runs = [entry[kind]["ns_per_run"][hook[0]] for kind in MONITORS]
            if all(v is None for v in runs):
                continue  # a hook none attaches here
            show = lambda v: "-" if v is None else f"{v:.1f}"
            lines.append(f"| {hook[0]} | " + " | ".join(show(v) for v in runs) + " |")
        floor, one_call = entry["floor"]["ns_per_packet"], entry["one call"]["ns_per_packet"]
        show = lambda v, form: "-" if v is None else form.format(v)
        lines += ["", f"Per packet (cgroup_skb and socket tracepoints; tcx per run above): floor {show(floor, '{:.0f}')} ns; one helper call per hook "
                  f"{show(one_call, '{:.0f}')} ns ({show(entry['one_call_to_floor'], '{:.2f}')}x the floor).", "",
                  "| netgraph path | ns per packet | x the floor |", "|---|---|---|"]
        for kind in NETGRAPH_KINDS:
            lines.append(f"| {kind} | {show(entry[kind]['ns_per_packet'], '{:.0f}')} | {show(entry['ratio_to_floor'][kind], '{:.2f}')} |")
        lines.append("")
        lines += ["| monitor | throughput | kept |", "|---|---|---|"]
        for kind in ("baseline", *MONITORS):
            lines.append(f"| {kind} | {entry['throughput'][kind] / 1e6:.1f} MB/s | {100 * entry['throughput_kept'][kind]:.1f}% |")
        lines.append("")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--netgraph", default=str(ROOT / "target/dist/netgraph"))
    parser.add_argument("--only", choices=list(WORKLOADS))
    parser.add_argument("--summarize", metavar="JSON", help="write the tables again from a run's JSON")
    parser.add_argument("--compare", action="append", default=[], metavar="LABEL=PATH",
                        help="another netgraph build, run on its default path as 'netgraph LABEL'")
    parser.add_argument("--paths", help="only these of netgraph's paths, comma-separated (default, 'no drops', ...)")
    args = parser.parse_args()
    global NETGRAPH_KINDS, MONITORS
    if args.paths:
        wanted = [f"netgraph {name.strip()}" for name in args.paths.split(",")]
        unknown = [kind for kind in wanted if kind not in NETGRAPH_KINDS]
        if unknown:
            raise SystemExit(f"no such path: {unknown}; the paths are {[name for name, _ in PATHS]}")
        NETGRAPH_KINDS = tuple(wanted)
    if args.summarize:
        COMPARED.update(json.loads(Path(args.summarize).read_text())["meta"].get("compared", {}))
    for compared in args.compare:
        label, _, path = compared.partition("=")
        if not path or not Path(path).exists():
            raise SystemExit(f"--compare {compared}: give LABEL=PATH of an existing netgraph binary")
        COMPARED[f"netgraph {label}"] = path
    NETGRAPH_KINDS = (*NETGRAPH_KINDS, *COMPARED)
    MONITORS = (*NETGRAPH_KINDS, "floor", "one call")
    if args.summarize:
        run = json.loads(Path(args.summarize).read_text())
        for kinds in run["rounds"].values():
            for rounds in kinds.values():
                for result in rounds:
                    if "hooks" in result and result["hooks"]:
                        result["ns_per_packet"] = per_packet(result)
        text = markdown(summarize(run["rounds"]), run["meta"])
        Path(args.summarize).with_suffix(".md").write_text(text)
        print(text)
        return
    if os.geteuid() != 0:
        raise SystemExit("bench/cost.py needs root (eBPF, bpf_stats)")
    for binary in (EXAMPLES / "bpf_floor", EXAMPLES / "labtraffic", Path(args.netgraph)):
        if not binary.exists():
            raise SystemExit(f"{binary} is missing: run cargo build --profile dist --bins --examples")
    stats_before = Path("/proc/sys/kernel/bpf_stats_enabled").read_text().strip()
    Path("/proc/sys/kernel/bpf_stats_enabled").write_text("1")
    results = {}
    kinds = ["baseline", *MONITORS]
    port = 7950
    try:
        with tempfile.TemporaryDirectory() as scratch:
            workdir = Path(scratch)
            for workload in [args.only] if args.only else list(WORKLOADS):
                results[workload] = {k: [] for k in kinds}
                for round_index in range(args.rounds):
                    order = kinds[round_index % len(kinds):] + kinds[:round_index % len(kinds)]
                    for kind in order:
                        port += 1
                        result = one_round(workload, kind, args, workdir, port)
                        results[workload][kind].append(result)
                        print(f"{workload} round {round_index + 1} {kind}: {result['throughput'] / 1e6:.1f} MB/s"
                              + (f", {result['ns_per_packet']:.0f} ns per packet" if result.get("ns_per_packet") else ""),
                              flush=True)
    finally:
        Path("/proc/sys/kernel/bpf_stats_enabled").write_text(stats_before)
    summary = summarize(results)
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": platform.node(), "kernel": platform.release(), "cpus": os.cpu_count(),
        "commit": commit, "rounds": args.rounds, "seconds": args.seconds,
        "compared": {kind: path for kind, path in COMPARED.items()},
    }
    text = markdown(summary, meta)
    print(text)
    out = ROOT / "bench/results"
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M")
    (out / f"{stamp}-cost.json").write_text(json.dumps({"meta": meta, "summary": summary, "rounds": results}, indent=1))
    (out / f"{stamp}-cost.md").write_text(text)
    (out / "cost-latest.md").write_text(text)


if __name__ == "__main__":
    main()
