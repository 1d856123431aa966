#!/usr/bin/env python3
"""Helpers for benches/compare.sh (the comparative benchmark of issue #9).

This file owns the parts of the harness that are easier in Python than in
bash; compare.sh owns the orchestration (namespaces, programs, runs).

  frames DIR                 write the BPF_PROG_TEST_RUN frames (one file each)
  testrun OUT ROUND REPEAT FRAMES_DIR NAME=SPEC...
                             run every frame through every program with
                             BPF_PROG_TEST_RUN (SPEC: 'pass' for a bare
                             XDP_PASS program loaded here, or a program id),
                             interleaved, appending JSON result lines to OUT
  spoofed OUT ROUND N NAME=SPEC...
                             N SYNs from N random sources, each run once
                             through every program (a source never seen:
                             its state is cold, as under a spoofed flood)
  pairs OUT N REPEAT FRAMES_DIR NAME=ID FIRST SECOND
                             N adjacent pairs of frames FIRST and SECOND
                             through program ID (see cmd_pairs)
  rules N DIR                write N enabled rules (none of them matches the
                             benchmark frames) to DIR/generated.yaml
  pcap FILE N                write a pcap of N mixed frames
  snap KEY=SPEC...           print one JSON object of counters (see snap())
  alerts FILE SIG            sum of the `count` fields of FILE's alert lines
                             for signature SIG, and the number of lines
  watch FILE SIG SECS PID IF READY
                             the flood's first frame (IF's tx counter in PID's
                             namespace) and the first alert line for SIG in
                             FILE; READY is created once it is watching
  record ...                 one end-to-end run's figures (see compare.sh)
  profile OUT ROUND SCEN VARIANT
                             one flood's receive-core samples (`perf script
                             -G -F ip,sym` on stdin), grouped by function
  profrun ID FRAMES_DIR CASE SECS REPEAT
                             run program ID on frame CASE (or on a new
                             spoofed SYN each run) for SECS seconds, for
                             `perf record` to sample (see compare.sh)
  metrics FILE               the counters compare.sh reads from /metrics text
  attach-pass IFACE          attach the bare XDP_PASS program, hold it until killed
  report RESULTS             print the Markdown tables

Every address is from a documentation range (RFC 5737, RFC 3849) or the
benchmarking range 198.18.0.0/15 (RFC 2544).
"""

import ctypes
import json
import os
import random
import re
import statistics
import struct
import sys
import time

# ---------------------------------------------------------------- bpf(2)

SYS_BPF = 321  # x86_64
BPF_PROG_LOAD = 5
BPF_PROG_TEST_RUN = 10
BPF_PROG_GET_FD_BY_ID = 13
BPF_PROG_TYPE_XDP = 6

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _bpf(cmd, attr):
    buf = ctypes.create_string_buffer(attr, 256)
    ret = _libc.syscall(SYS_BPF, cmd, buf, 256)
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"bpf({cmd}): {os.strerror(err)}")
    return ret, buf


def load_xdp_pass():
    """A two-instruction XDP program: r0 = XDP_PASS (2); exit."""
    insns = struct.pack("<BBhi", 0xB7, 0, 0, 2) + struct.pack("<BBhi", 0x95, 0, 0, 0)
    insn_buf = ctypes.create_string_buffer(insns)
    lic = ctypes.create_string_buffer(b"GPL")
    attr = struct.pack(
        "<IIQQIIQII16s",
        BPF_PROG_TYPE_XDP,
        2,
        ctypes.addressof(insn_buf),
        ctypes.addressof(lic),
        0,
        0,
        0,
        0,
        0,
        b"bench_xdp_pass",
    )
    fd, _ = _bpf(BPF_PROG_LOAD, attr)
    return fd


BPF_LINK_CREATE = 28
BPF_XDP = 37
XDP_FLAGS_DRV_MODE = 4


def cmd_attach_pass(ifname):
    """Attach the bare XDP_PASS program to IFNAME (native mode) with a BPF
    link and hold it until killed (the link goes with this process)."""
    import signal
    import socket

    fd = load_xdp_pass()
    ifindex = socket.if_nametoindex(ifname)
    _bpf(BPF_LINK_CREATE, struct.pack("<IIII", fd, ifindex, BPF_XDP, XDP_FLAGS_DRV_MODE))
    print("attached", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        time.sleep(3600)


def prog_fd_by_id(prog_id):
    fd, _ = _bpf(BPF_PROG_GET_FD_BY_ID, struct.pack("<III", int(prog_id), 0, 0))
    return fd


def test_run(fd, frame, repeat):
    """Mean ns per run as the kernel reports it, and the program's verdict."""
    data_in = ctypes.create_string_buffer(frame, len(frame))
    data_out = ctypes.create_string_buffer(len(frame) + 512)
    attr = struct.pack(
        "<IIIIQQIIIIQQIII",
        fd,
        0,
        len(frame),
        len(frame) + 512,
        ctypes.addressof(data_in),
        ctypes.addressof(data_out),
        repeat,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
    )
    _, buf = _bpf(BPF_PROG_TEST_RUN, attr)
    _fd, retval, _din, _dout, _pin, _pout, _rep, duration = struct.unpack_from("<IIIIQQII", buf.raw)
    return duration, retval


# ---------------------------------------------------------------- frames

def _frames():
    from scapy.all import (  # noqa: E402  (slow import, only where needed)
        ARP,
        IP,
        TCP,
        UDP,
        Dot1Q,
        Ether,
        IPv6,
        IPv6ExtHdrDestOpt,
        IPv6ExtHdrHopByHop,
        Raw,
    )

    eth = dict(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    v4 = dict(src="192.0.2.10", dst="198.51.100.20", ttl=64)
    v6 = dict(src="2001:db8::10", dst="2001:db8:1::20", hlim=64)
    payload = Raw(b"x" * 64)
    frames = {
        "ipv4_tcp_syn": Ether(**eth) / IP(**v4, flags="DF") / TCP(sport=40000, dport=80, flags="S", seq=1000),
        "ipv4_tcp_ack": Ether(**eth) / IP(**v4, flags="DF") / TCP(sport=40000, dport=80, flags="A", seq=1001, ack=5000) / payload,
        "ipv4_udp": Ether(**eth) / IP(**v4) / UDP(sport=40000, dport=53) / payload,
        "ipv6_tcp": Ether(**eth) / IPv6(**v6) / TCP(sport=40000, dport=443, flags="A", seq=1001, ack=5000) / payload,
        "ipv6_2ext_tcp": Ether(**eth) / IPv6(**v6) / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt()
        / TCP(sport=40000, dport=443, flags="A", seq=1001, ack=5000) / payload,
        "vlan_ipv4_tcp": Ether(**eth) / Dot1Q(vlan=100) / IP(**v4, flags="DF")
        / TCP(sport=40000, dport=80, flags="A", seq=1001, ack=5000) / payload,
        # A 1,480-byte datagram cut in two: the first fragment carries the
        # UDP header and 1,472 bytes, the second (offset 1,480) the rest.
        "ipv4_frag_first": Ether(**eth) / IP(**v4, id=4242, flags="MF", frag=0, proto=17)
        / Raw(struct.pack("!HHHH", 40000, 53, 1600, 0) + b"y" * 1472),
        "ipv4_frag_nonfirst": Ether(**eth) / IP(**v4, id=4242, flags=0, frag=185, proto=17) / Raw(b"z" * 120),
        "arp": Ether(src=eth["src"], dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=eth["src"], psrc="192.0.2.10", pdst="192.0.2.1"),
    }
    # The TCP ACK inside VXLAN (UDP 4789, VNI 42): a mirrored copy as cloud
    # traffic mirroring delivers it; judged on the inner packet (issue #14).
    from scapy.layers.vxlan import VXLAN  # noqa: E402

    frames["vxlan_ipv4_tcp_ack"] = (
        Ether(**eth) / IP(src="203.0.113.1", dst="203.0.113.2", ttl=64) / UDP(sport=51515, dport=4789)
        / VXLAN(vni=42, flags=0x08) / frames["ipv4_tcp_ack"]
    )
    return {name: bytes(pkt) for name, pkt in frames.items()}


FRAME_ORDER = [
    "ipv4_tcp_syn",
    "ipv4_tcp_ack",
    "ipv4_udp",
    "ipv6_tcp",
    "ipv6_2ext_tcp",
    "vlan_ipv4_tcp",
    "vxlan_ipv4_tcp_ack",
    "ipv4_frag_first",
    "ipv4_frag_nonfirst",
    "arp",
]
BENIGN = {"ipv4_tcp_ack", "ipv4_udp", "ipv4_frag_nonfirst", "arp", "vxlan_ipv4_tcp_ack"}


def cmd_frames(outdir):
    os.makedirs(outdir, exist_ok=True)
    for name, data in _frames().items():
        with open(os.path.join(outdir, name + ".bin"), "wb") as f:
            f.write(data)


def cmd_testrun(out, rnd, repeat, frames_dir, specs):
    progs = []
    for spec in specs:
        name, _, what = spec.partition("=")
        fd = load_xdp_pass() if what == "pass" else prog_fd_by_id(what)
        progs.append((name, fd))
    frames = {}
    for name in FRAME_ORDER:
        with open(os.path.join(frames_dir, name + ".bin"), "rb") as f:
            frames[name] = f.read()
    rnd = int(rnd)
    with open(out, "a") as res:
        for i, frame in enumerate(FRAME_ORDER):
            # Rotate the order of the programs per frame and round.
            shift = (i + rnd) % len(progs)
            for name, fd in progs[shift:] + progs[:shift]:
                ns, verdict = test_run(fd, frames[frame], int(repeat))
                res.write(json.dumps({"section": "testrun", "round": rnd, "variant": name, "case": frame,
                                      "metric": "ns", "value": ns, "verdict": verdict}) + "\n")


SPOOFED_CASE = "ipv4_tcp_syn_spoofed"


def _spoofed_frames(n, seed):
    """`n` TCP SYNs to 198.51.100.10:80, each from a random source in
    198.18.0.0/16 and a random port, as trafgen's SYN flood sends them."""
    from scapy.all import IP, TCP, Ether, raw  # noqa: E402

    tmpl = bytearray(raw(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
                         / IP(src="198.18.0.1", dst="198.51.100.10", ttl=64)
                         / TCP(sport=1234, dport=80, flags="S", window=64240)))
    rng = random.Random(seed)
    for _ in range(n):
        f = bytearray(tmpl)
        f[28:30] = struct.pack("!H", rng.randrange(65536))  # source 198.18.x.y
        f[34:36] = struct.pack("!H", rng.randrange(1024, 65536))  # source port
        f[24:26] = b"\0\0"
        s = sum(struct.unpack("!10H", bytes(f[14:34])))
        while s >> 16:
            s = (s & 0xFFFF) + (s >> 16)
        f[24:26] = struct.pack("!H", ~s & 0xFFFF)
        yield bytes(f)


def cmd_spoofed(out, rnd, n, specs):
    """Each of `n` SYNs from random sources run once through every program
    (the order of the programs rotating frame by frame); per program, the
    median of the kernel's per-run times. Unlike a repeated frame, whose
    per-source state stays in the cache, every run meets a source never
    seen, as every packet of a spoofed flood does."""
    progs = []
    for spec in specs:
        name, _, what = spec.partition("=")
        progs.append((name, load_xdp_pass() if what == "pass" else prog_fd_by_id(what)))
    times = {name: [] for name, _ in progs}
    for i, frame in enumerate(_spoofed_frames(int(n), int(rnd))):
        shift = i % len(progs)
        for name, fd in progs[shift:] + progs[:shift]:
            times[name].append(test_run(fd, frame, 1)[0])
    with open(out, "a") as res:
        for name, ts in times.items():
            res.write(json.dumps({"section": "testrun", "round": int(rnd), "variant": name, "case": SPOOFED_CASE,
                                  "metric": "ns", "value": statistics.median(ts), "frames": len(ts)}) + "\n")


def cmd_pairs(out, n, repeat, frames_dir, spec, first, second):
    """The cost of frame `second` against frame `first` through one program,
    measured as `n` adjacent pairs (each frame `repeat` times, which one
    goes first alternating), one ratio per pair. This virtual machine runs
    in two speed states about 2x apart and can change state between two
    measurements of a round; a pair takes a few tens of milliseconds, so
    nearly every pair sees one state, and the median ratio over pairs is
    the program's, not the machine's."""
    name, _, prog_id = spec.partition("=")
    fd = prog_fd_by_id(prog_id)
    data = {}
    for frame in (first, second):
        with open(os.path.join(frames_dir, frame + ".bin"), "rb") as f:
            data[frame] = f.read()
    with open(out, "a") as res:
        for i in range(int(n)):
            ns = {}
            for frame in ((first, second) if i % 2 == 0 else (second, first)):
                ns[frame], _ = test_run(fd, data[frame], int(repeat))
            res.write(json.dumps({"section": "pairs", "pair": i, "variant": name, "first": first,
                                  "second": second, "first_ns": ns[first], "second_ns": ns[second]}) + "\n")


# ---------------------------------------------------------------- rules

def cmd_rules(n, outdir):
    """N enabled rules, cycling through the match kinds, each scoped to a
    source in 203.0.113.0/24 or 2001:db8:ffff::/48 (the benchmark frames
    come from 192.0.2.10 and 2001:db8::10), so no frame matches any."""
    n = int(n)
    os.makedirs(outdir, exist_ok=True)
    kinds = [
        "tcp_flags: { set: [SYN, FIN] }",
        "tcp_flags: { set: [FIN, PSH, URG] }",
        "ttl: { below: 3 }",
        "fragment: { tiny_first_below: 64 }",
        "fragment: { offset_one: true }",
        "header: { check: land }",
        "header: { check: zero_port }",
        "syn_flood: { track: by_dst, threshold: 500, window_ms: 1000 }",
    ]
    lines = ["# Generated by benches/compare.py rules: none matches the benchmark frames.", "rules:"]
    for i in range(n):
        src = f"203.0.113.{i % 256}/32" if i % 2 == 0 else f'"2001:db8:ffff::{i:x}/128"'
        lines += [
            f"  - id: {900000 + i}",
            f"    name: generated rule {i}",
            "    severity: low",
            f"    scope: {{ src: [{src}] }}",
            "    match:",
            f"      {kinds[i % len(kinds)]}",
        ]
    with open(os.path.join(outdir, "generated.yaml"), "w") as f:
        f.write("\n".join(lines) + "\n")


# ---------------------------------------------------------------- pcap

def cmd_pcap(path, n):
    """N frames: a mix of benign TCP/UDP (IPv4, IPv6, VLAN), SYNs, attacks
    (SYN+FIN, NULL, tiny fragments), ARP, from 4,096 rotating sources."""
    n = int(n)
    base = _frames()
    # The mix (and its weights below) is the one from before the VXLAN frame.
    templates = [base[k] for k in FRAME_ORDER if k != "vxlan_ipv4_tcp_ack"]
    from scapy.all import IP, TCP, Ether  # noqa: E402

    eth = dict(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    v4 = dict(src="192.0.2.10", dst="198.51.100.20", ttl=64)
    templates += [
        bytes(Ether(**eth) / IP(**v4) / TCP(sport=40000, dport=80, flags="SF")),
        bytes(Ether(**eth) / IP(**v4) / TCP(sport=40000, dport=80, flags="")),
        bytes(Ether(**eth) / IP(**v4, flags="MF", frag=0, proto=6) / b"\x9c\x40\x00\x50"),
    ]
    # Weights: mostly benign traffic.
    weights = [3, 20, 15, 8, 4, 6, 2, 2, 2, 1, 1, 1]
    rng = random.Random(9)
    # Patch the IPv4 source's last two octets (offset 26 after plain
    # Ethernet) so the sources vary; checksums are not recomputed (neither
    # tool checks them).
    variants = []
    for t in range(len(templates)):
        for k in range(64):
            data = bytearray(templates[t])
            if data[12:14] == b"\x08\x00":
                data[28:30] = struct.pack("!H", rng.randrange(4096))
            variants.append((t, bytes(data)))
    by_template = {}
    for t, data in variants:
        by_template.setdefault(t, []).append(data)
    choice = rng.choices(range(len(templates)), weights=weights, k=4096)
    ts = 1_700_000_000
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        chunk = []
        for i in range(n):
            data = by_template[choice[i % 4096]][i % 64]
            usec = i % 1_000_000
            chunk.append(struct.pack("<IIII", ts + i // 1_000_000, usec, len(data), len(data)))
            chunk.append(data)
            if len(chunk) >= 20000:
                f.write(b"".join(chunk))
                chunk = []
        f.write(b"".join(chunk))


# ---------------------------------------------------------------- counters

def _stat_cpu_ticks(path):
    with open(path) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime (after state)


def _proc_cpu_ticks(pid):
    """utime + stime of every thread of PID (a process's own stat sums its
    live threads)."""
    try:
        return _stat_cpu_ticks(f"/proc/{pid}/stat")
    except (FileNotFoundError, ProcessLookupError):
        return 0


def snap(specs):
    """KEY=SPEC, SPEC one of: task:TID (one thread's utime+stime, ticks),
    proc:PID (a process, ticks), core:N (softirq+irq ticks of CPU N),
    busy:N (non-idle ticks of CPU N), snmp:PID (IpInReceives in PID's
    namespace), dev:PID:IF:rx|tx|txdrop (interface counters in PID's
    namespace), time (epoch seconds)."""
    out = {}
    for spec in specs:
        key, _, what = spec.partition("=")
        kind, _, arg = what.partition(":")
        if kind == "time":
            out[key] = time.time()
        elif kind == "sched":
            # ns on a CPU (schedstat), precise where stat's ticks are 10 ms
            with open(f"/proc/{arg}/schedstat") as f:
                out[key] = int(f.read().split()[0])
        elif kind == "procsched":
            # every live thread of a process, ns on a CPU
            total = 0
            if arg:
                try:
                    for tid in os.listdir(f"/proc/{arg}/task"):
                        try:
                            with open(f"/proc/{arg}/task/{tid}/schedstat") as f:
                                total += int(f.read().split()[0])
                        except (FileNotFoundError, ProcessLookupError):
                            pass
                except FileNotFoundError:
                    pass
            out[key] = total
        elif kind == "task":
            out[key] = _stat_cpu_ticks(f"/proc/{arg}/stat") if arg else 0
        elif kind == "proc":
            out[key] = _proc_cpu_ticks(arg) if arg else 0
        elif kind in ("core", "busy"):
            with open("/proc/stat") as f:
                for line in f:
                    if line.startswith(f"cpu{arg} "):
                        v = [int(x) for x in line.split()[1:]]
                        # user nice system idle iowait irq softirq steal
                        out[key] = v[5] + v[6] if kind == "core" else sum(v[:8]) - v[3] - v[4]
        elif kind == "snmp":
            with open(f"/proc/{arg}/net/snmp") as f:
                rows = [line.split() for line in f if line.startswith("Ip:")]
            out[key] = int(rows[1][rows[0].index("InReceives")])
        elif kind == "dev":
            pid, ifname, which = arg.split(":")
            with open(f"/proc/{pid}/net/dev") as f:
                for line in f:
                    name, _, rest = line.partition(":")
                    if name.strip() == ifname:
                        v = [int(x) for x in rest.split()]
                        out[key] = {"rx": v[0 + 1], "tx": v[8 + 1], "txdrop": v[8 + 3]}[which]
        else:
            raise SystemExit(f"snap: unknown spec {spec}")
    print(json.dumps(out))


# Kernel functions a BPF program's helpers and maps run in, by what they serve.
PROFILE_GROUPS = [
    (re.compile(r"^(htab_|__htab_|lookup_nulls_elem_raw|lookup_elem_raw|jhash|bpf_lru_|__bpf_lru_|pcpu_freelist|___pcpu_freelist)"),
     "kernel: BPF hash maps (lookups, LRU)"),
    (re.compile(r"^(bpf_perf_event_output|perf_output|perf_event_output|__perf_event_output|bpf_event_output)"),
     "kernel: perf output"),
    (re.compile(r"^(bpf_ktime|ktime_get|read_tsc|kvm_clock|set_normalized_timespec)"), "kernel: clock"),
    (re.compile(r"^(trie_|longest_prefix_match)"), "kernel: LPM tries"),
    (re.compile(r"^bpf_loop$"), "kernel: bpf_loop"),
    # Every `ret` of a BPF subprogram goes through the CPU's return thunk
    # (the indirect-target-selection / retbleed mitigations of this kernel).
    (re.compile(r"^(its_return_thunk|__x86_return_thunk|retbleed_return_thunk|srso_)"), "kernel: return thunks"),
]
# What BPF_PROG_TEST_RUN itself runs around each run of the program (in a
# test-run profile only, matched before the groups above: on the wire these
# are the receive path's). Its timer reads ktime_get, which reads the TSC;
# the program reads the coarse clock (the precise one, through the TSC too,
# only for an alert record's timestamp).
TEST_RUN_LOOP = re.compile(r"^(bpf_test_run|bpf_test_timer|bpf_prog_test_run|__local_bh_enable_ip|"
                           r"bpf_dispatcher_xdp_func|xdp_convert|bpf_prog_run_xdp|migrate_|rcu_read_|"
                           r"ktime_get$|read_tsc$)")
# Groups that are the program's own time in a test run (see cmd_report).
PROGRAM_GROUPS = ("BPF: ", "kernel: BPF hash maps", "kernel: perf output", "kernel: clock", "kernel: LPM tries",
                  "kernel: bpf_loop", "kernel: return thunks")


def profile_group(sym, test_run=False):
    """The report line a sampled function counts towards."""
    m = re.match(r"^bpf_prog_[0-9a-f]+_(.*)$", sym)
    if m:
        # Generic subprograms carry their instantiation in the name.
        name = re.split(r"_3C_|_7B_closure", m.group(1))[0] or "closure"
        return "BPF: " + name
    if test_run and TEST_RUN_LOOP.match(sym):
        return "harness: the test-run loop"
    for pattern, group in PROFILE_GROUPS:
        if pattern.match(sym):
            return group
    if test_run:
        return "harness: the rest (userspace, kernel)"
    return "kernel: the receive path and the rest"


def cmd_profile(out, rnd, scen, variant):
    """Shares of one flood's receive-core samples, or of one frame's test
    run for a VARIANT `testrun:NAME` (`perf script -G -F ip,sym` on stdin:
    an address and a function name per sample)."""
    counts = {}
    n = 0
    for line in sys.stdin:
        fields = line.split()
        if not fields:
            continue
        sym = fields[1] if len(fields) > 1 else "[unknown]"
        n += 1
        g = profile_group(sym, test_run=variant.startswith("testrun:"))
        counts[g] = counts.get(g, 0) + 1
    if n == 0:
        return
    with open(out, "a") as f:
        f.write(json.dumps({"section": "profile", "round": int(rnd), "case": scen, "variant": variant,
                            "samples": n, "shares": {g: c / n for g, c in counts.items()}}) + "\n")


def cmd_profrun(prog_id, frames_dir, case, secs, repeat):
    """Runs one program on one benchmark frame, over and over for `secs`
    seconds, while compare.sh samples this CPU with `perf record`; for
    SPOOFED_CASE, a SYN from a new random source each run, as in
    cmd_spoofed. Prints the mean ns per run the kernel measured."""
    fd = prog_fd_by_id(prog_id)
    if case == SPOOFED_CASE:
        frames, repeat = list(_spoofed_frames(100_000, 7)), 1
    else:
        with open(os.path.join(frames_dir, case + ".bin"), "rb") as f:
            frames, repeat = [f.read()], int(repeat)
    end = time.monotonic() + float(secs)
    total = runs = 0
    while time.monotonic() < end:
        total += test_run(fd, frames[runs % len(frames)], repeat)[0]
        runs += 1
    print(f"{case}: {total / max(runs, 1):.0f} ns per run over {runs} calls")


def cmd_record(out, rnd, scen, variant, before, after, t_end, extra, alerts, watch):
    """One end-to-end run's figures from two snap() objects."""
    b, a = json.loads(before), json.loads(after)
    tick_ns = 1e9 / os.sysconf("SC_CLK_TCK")
    elapsed = float(t_end) - b["t"]
    received = a["tx"] - b["tx"]  # into the receive side's ring
    offered = received + a["txdrop"] - b["txdrop"]  # trafgen's attempts
    delivered = a["rx"] - b["rx"]  # reached ip_rcv (IpInReceives)
    rx_ns = (a["napi"] - b["napi"]) + (a["soft"] - b["soft"]) * tick_ns
    user_ns = a["user"] - b["user"]  # schedstat ns of the tool's threads
    per = max(received, 1)
    fig = {
        "elapsed_s": elapsed,
        "offered_kpps": offered / elapsed / 1000,
        "delivered_kpps": delivered / elapsed / 1000,
        "received_kpps": received / elapsed / 1000,
        "offered": offered,
        "received": received,
        "delivered": delivered,
        "rx_ns_per_pkt": rx_ns / per,
        "user_ns_per_pkt": user_ns / per if variant != "nothing" else 0.0,
        "total_ns_per_pkt": (rx_ns + user_ns) / per,
        # CPU 1 carries the NAPI thread and the tool's userspace.
        "rx_core_busy_pct": (rx_ns + user_ns) / (elapsed * 1e9) * 100,
    }
    for key, value in json.loads(extra).items():
        fig[key] = value
    al = json.loads(alerts)
    if "count_sum" in al:
        fig["count_sum"] = al["count_sum"]
        fig["alert_lines_100001"] = al["lines"]
    w = json.loads(watch)
    if "seen" in w:
        start = w.get("flood_start") or b["t"]
        fig["alert_latency_ms"] = (w["seen"] - start) * 1000 if w["seen"] else None
        fig["alert_kernel_ms"] = (w["packet_time"] - start) * 1000 if w.get("packet_time") else None
        fig["alert_poll_gap_ms"] = w.get("poll_gap", 0) * 1000
    with open(out, "a") as f:
        for metric, value in fig.items():
            f.write(json.dumps({"section": "wire", "round": int(rnd), "case": scen, "variant": variant,
                                "metric": metric, "value": value}) + "\n")


# ---------------------------------------------------------------- alerts

def cmd_metrics(path):
    """The sensor's /metrics text (saved to PATH) -> the counters compare.sh
    reports: perf samples lost, kernel alert output errors, rule 100001's
    kernel matches, XDP drops."""
    want = {"perf_lost": ("sensor_perf_lost_samples_total", None),
            "output_errors": ("sensor_kernel_alert_output_errors_total", None),
            "hits": ("sensor_rule_hits_total", 'sig_id="100001"'),
            "dropped": ("sensor_packets_dropped_total", None)}
    out = {}
    try:
        text = open(path).read()
    except FileNotFoundError:
        text = ""
    for key, (name, label) in want.items():
        for line in text.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            metric, _, value = line.rpartition(" ")
            base = metric.split("{")[0]
            if base == name and (label is None or label in metric):
                out[key] = out.get(key, 0) + int(float(value))
    print(json.dumps(out))


def cmd_fnmlog(path, before, victim):
    """FastNetMon's detection time: its first log line naming VICTIM after
    the flood started (BEFORE: the snap taken just before trafgen)."""
    import datetime

    start = json.loads(before)["t"]
    first = None
    try:
        with open(path, errors="replace") as f:
            for line in f:
                m = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d+) ", line)
                if not m or victim not in line:
                    continue
                t = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S").timestamp() + int(m.group(2)) / 1000
                if t >= start:
                    first = t
                    break
    except FileNotFoundError:
        pass
    print(json.dumps({"alert_latency_ms": (first - start) * 1000 if first else None}))


def cmd_alerts(path, sig):
    total = lines = 0
    needle = f'"signature_id":{sig},'
    rx = re.compile(r'"count":(\d+)')
    with open(path, errors="replace") as f:
        for line in f:
            if needle in line:
                lines += 1
                m = rx.search(line)
                total += int(m.group(1)) if m else 1
    print(json.dumps({"count_sum": total, "lines": lines}))


def _dev_tx(pid, ifname):
    with open(f"/proc/{pid}/net/dev") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name.strip() == ifname:
                return int(rest.split()[9])
    return 0


def cmd_watch(path, sig, timeout, pid, ifname, ready):
    """Poll every millisecond: the injector veth's tx counter (interface
    IFNAME in PID's namespace) for the flood's first frame, and PATH (a JSON
    lines file being written) for the first line for SIG. Prints the epoch
    times of both and that line's own `timestamp` field."""
    import datetime

    needle = f'"signature_id":{sig},'
    end = time.time() + float(timeout)
    pos = 0
    pending = ""
    tx0 = _dev_tx(pid, ifname)
    open(ready, "w").close()  # compare.sh starts the flood only now
    start = None
    result = {"flood_start": None, "seen": None, "packet_time": None, "poll_gap": 0.0}
    last = time.time()
    while time.time() < end:
        now = time.time()
        # The largest gap between two polls is the figures' resolution.
        result["poll_gap"] = max(result["poll_gap"], now - last)
        last = now
        if start is None and _dev_tx(pid, ifname) != tx0:
            start = result["flood_start"] = time.time()
        try:
            with open(path, errors="replace") as f:
                f.seek(pos)
                data = f.read()
                pos = f.tell()
        except FileNotFoundError:
            data = ""
        if data:
            seen = time.time()
            pending += data
            *lines, pending = pending.split("\n")
            for line in lines:
                if needle in line:
                    stamp = json.loads(line).get("timestamp")
                    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z", stamp or "")
                    if m:
                        result["packet_time"] = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").replace(
                            tzinfo=datetime.timezone.utc).timestamp() + float("0." + (m.group(2) or "0"))
                    result["seen"] = seen
                    print(json.dumps(result))
                    return
        time.sleep(0.001)
    print(json.dumps(result))


# ---------------------------------------------------------------- report

def _fmt(x):
    if x is None:
        return "—"
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def _summ(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return statistics.median(values), min(values), max(values)


def _cell(s, unit=""):
    if s is None:
        return "n/a"
    med, lo, hi = s
    if len(set([lo, hi])) == 1:
        return f"{_fmt(med)}{unit}"
    return f"{_fmt(med)}{unit} ({_fmt(lo)}–{_fmt(hi)})"


# The wire variants whose detection figures the report shows (sensor_ids_b:
# the A/B build's, SENSOR_B).
DETECTORS = ("sensor_ids", "sensor_ids_b", "sensor_drop_blocked", "fastnetmon")


def _testrun_profile_table(rows, per_round):
    """Where the default-rules program's time goes, frame by frame: the
    program's samples (its BPF functions and the kernel code its helpers and
    map lookups run) split by function, each share also read as ns of the
    frame's median test-run time above bare XDP_PASS (the harness's own)."""
    prof = [r for r in rows if r.get("section") == "profile" and r["variant"].startswith("testrun:")]
    if not prof:
        return []
    cases = [c for c in FRAME_ORDER + [SPOOFED_CASE] if any(r["case"] == c for r in prof)]
    variant = prof[0]["variant"].split(":", 1)[1]

    def program_shares(r):
        own = {g: v for g, v in r["shares"].items() if g.startswith(PROGRAM_GROUPS)}
        total = sum(own.values())
        return total, {g: v / total for g, v in own.items()} if total else {}

    split = {}
    for c in cases:
        r = [x for x in prof if x["case"] == c][-1]
        total, shares = program_shares(r)
        med = lambda v: statistics.median(per_round(v, c).values()) if per_round(v, c) else None  # noqa: E731
        prog_ns = med(variant)
        if prog_ns is not None and med("xdp_pass") is not None:
            prog_ns -= med("xdp_pass")
        split[c] = (r["samples"], total, shares, prog_ns)
    groups = sorted({g for _, _, sh, _ in split.values() for g in sh},
                    key=lambda g: -sum(sh.get(g, 0) for _, _, sh, _ in split.values()))
    out = [f"##### Where {variant}'s test-run time goes (perf record on the test run's CPU, one run of a few "
           "seconds per frame; share of the program's samples, and ≈ ns of its median above XDP_PASS)", ""]
    out.append("| function | " + " | ".join(cases) + " |")
    out.append("|" + "---|" * (len(cases) + 1))
    out.append("| program's samples (of all) | " + " | ".join(
        f"{int(split[c][0] * split[c][1])} ({split[c][1] * 100:.0f} %)" for c in cases) + " |")
    out.append("| ns above XDP_PASS (median) | " + " | ".join(
        _fmt(split[c][3]) if split[c][3] is not None else "–" for c in cases) + " |")
    for g in groups:
        cells = []
        for c in cases:
            share, ns = split[c][2].get(g, 0), split[c][3]
            cells.append("–" if not share else f"{share * 100:.0f} %" + (f" ({_fmt(share * ns)})" if ns else ""))
        out.append(f"| {g} | " + " | ".join(cells) + " |")
    out.append("")
    return out


def cmd_report(path):
    rows = [json.loads(line) for line in open(path) if line.strip()]
    notes = [r for r in rows if r.get("section") == "note"]
    meta = [r for r in rows if r.get("section") == "meta"]
    out = []
    for m in meta:
        out.append(f"- {m['text']}")
    if meta:
        out.append("")

    # ---- BPF_PROG_TEST_RUN
    tr = [r for r in rows if r.get("section") == "testrun"]
    if tr:
        order = ["xdp_pass", "xdp_filter", "sensor_default", "sensor_generated"]
        variants = sorted(set(r["variant"] for r in tr), key=lambda v: (order.index(v) if v in order else 99, v))
        rounds = sorted(set(r["round"] for r in tr))

        def per_round(variant, case):
            return {r["round"]: r["value"] for r in tr if r["variant"] == variant and r["case"] == case}

        def ratio(a, b, case):
            x, y = per_round(a, case), per_round(b, case)
            return _summ([x[k] / y[k] for k in rounds if k in x and k in y and y[k]])

        out.append(f"### BPF_PROG_TEST_RUN: ns per packet, median (min–max) over {len(rounds)} rounds")
        out.append("")
        hdr = ["frame"] + variants
        has = lambda v: v in variants  # noqa: E731
        if has("sensor_default") and has("xdp_filter"):
            hdr.append("sensor default ÷ xdp-filter (target ≤ 1.0, benign ≤ 0.6)")
        if has("sensor_generated") and has("sensor_default"):
            hdr.append("sensor generated ÷ default (target ≤ 1.15)")
        if has("sensor_b") and has("sensor_default"):
            hdr.append("A/B: sensor_b ÷ sensor_default")
        out.append("| " + " | ".join(hdr) + " |")
        out.append("|" + "---|" * len(hdr))
        for case in FRAME_ORDER + [SPOOFED_CASE]:
            if not any(r["case"] == case for r in tr):
                continue
            cells = [case + (" (benign)" if case in BENIGN else "")]
            for v in variants:
                cells.append(_cell(_summ(list(per_round(v, case).values()))))
            if has("sensor_default") and has("xdp_filter"):
                s = ratio("sensor_default", "xdp_filter", case)
                limit = 0.6 if case in BENIGN else 1.0
                cells.append(_cell(s, "×") + (" ✓" if s and s[0] <= limit else " ✗"))
            if has("sensor_generated") and has("sensor_default"):
                s = ratio("sensor_generated", "sensor_default", case)
                cells.append(_cell(s, "×") + (" ✓" if s and s[0] <= 1.15 else " ✗"))
            if has("sensor_b") and has("sensor_default"):
                cells.append(_cell(ratio("sensor_b", "sensor_default", case), "×"))
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
        out += _testrun_profile_table(rows, per_round)

    # ---- adjacent pairs (cmd_pairs)
    pairs = [r for r in rows if r.get("section") == "pairs"]
    for key in dict.fromkeys((r["variant"], r["first"], r["second"]) for r in pairs):
        ps = [r for r in pairs if (r["variant"], r["first"], r["second"]) == key]
        variant, first, second = key
        ratios = _summ([r["second_ns"] / r["first_ns"] for r in ps if r["first_ns"]])
        out.append(f"### {second} ÷ {first}, {variant}: {len(ps)} adjacent pairs")
        out.append("")
        out.append(f"| {first}, ns | {second}, ns | ratio per pair, median (min–max) |")
        out.append("|---|---|---|")
        out.append(f"| {_cell(_summ([r['first_ns'] for r in ps]))} | {_cell(_summ([r['second_ns'] for r in ps]))} "
                   f"| {_cell(ratios, '×')}" + (" (target < 2)" if second.startswith("vxlan") else "") + " |")
        out.append("")

    # ---- wire
    wire = [r for r in rows if r.get("section") == "wire"]
    targets = []
    if wire:
        scenarios = list(dict.fromkeys(r["case"] for r in wire))
        for scen in scenarios:
            w = [r for r in wire if r["case"] == scen]
            variants = list(dict.fromkeys(r["variant"] for r in w))
            rounds = sorted(set(r["round"] for r in w))

            def val(variant, metric, w=w):
                return {r["round"]: r["value"] for r in w
                        if r["variant"] == variant and r["metric"] == metric and r["value"] is not None}

            def rel(variant, metric, base="nothing", rounds=rounds, val=val):
                x, y = val(variant, metric), val(base, metric)
                return _summ([x[k] / y[k] for k in rounds if k in x and k in y and y[k]])

            def added(variant, val=val, rounds=rounds):
                x, y = val(variant, "total_ns_per_pkt"), val("nothing", "total_ns_per_pkt")
                return {k: x[k] - y[k] for k in rounds if k in x and k in y}

            def added_ratio(a, b, rounds=rounds, added=added):
                # Added CPU below zero is noise around the baseline: counted as 0.
                x, y = added(a), added(b)
                return _summ([max(x[k], 0) / y[k] for k in rounds if k in x and k in y and y[k] > 0])

            out.append(f"### End to end, {scen}: median (min–max) over {len(rounds)} rounds")
            out.append("")
            hdr = ["variant", "sent (trafgen's tries) kpps", "received kpps", "delivered kpps", "delivered ÷ nothing", "rx-core CPU ns/pkt",
                   "rx-core ÷ nothing", "rx-core ÷ xdp_pass", "userspace CPU ns/pkt", "total CPU ns/pkt",
                   "added CPU ns/pkt (total − nothing)", "receive core busy %"]
            out.append("| " + " | ".join(hdr) + " |")
            out.append("|" + "---|" * len(hdr))
            for v in variants:
                cells = [v, _cell(_summ(list(val(v, "offered_kpps").values()))),
                         _cell(_summ(list(val(v, "received_kpps").values()))),
                         _cell(_summ(list(val(v, "delivered_kpps").values()))),
                         _cell(rel(v, "delivered_kpps"), "×"),
                         _cell(_summ(list(val(v, "rx_ns_per_pkt").values()))),
                         _cell(rel(v, "rx_ns_per_pkt"), "×"),
                         _cell(rel(v, "rx_ns_per_pkt", "xdp_pass"), "×"),
                         _cell(_summ(list(val(v, "user_ns_per_pkt").values()))),
                         _cell(_summ(list(val(v, "total_ns_per_pkt").values()))),
                         _cell(_summ(list(added(v).values()))),
                         _cell(_summ(list(val(v, "rx_core_busy_pct").values())))]
                out.append("| " + " | ".join(cells) + " |")
            out.append("")
            sens = [(m, label) for m, label in [
                ("alert_latency_ms", "first flood alert, ms after the flood's first frame (sensor: rule 100301's line; FastNetMon: its first log line on the victim, 1 s checks)"),
                ("alert_kernel_ms", "that alert's packet timestamp, ms after the first frame"),
                ("alert_poll_gap_ms", "longest gap between two polls, ms (the resolution of both)"),
                ("perf_lost", "perf samples lost"), ("output_errors", "kernel alert output errors"),
                ("count_sum", "Σ alert-line count, rule 100001"), ("hits", "kernel matched, rule 100001"),
                ("dropped", "XDP drops")] if any(val(v, m) for v in DETECTORS)]
            if sens:
                out.append("| detectors, " + scen + " | " + " | ".join(label for _, label in sens) + " |")
                out.append("|" + "---|" * (len(sens) + 1))
                for v in DETECTORS:
                    if v in variants:
                        out.append("| " + v + " | " + " | ".join(_cell(_summ(list(val(v, m).values()))) for m, _ in sens) + " |")
                out.append("")

            prof = [r for r in rows if r.get("section") == "profile" and r["case"] == scen]
            for pv in dict.fromkeys(r["variant"] for r in prof):
                ps = [r for r in prof if r["variant"] == pv]
                groups = sorted({g for r in ps for g in r["shares"]},
                                key=lambda g: -statistics.median([r["shares"].get(g, 0) for r in ps]))
                out.append(f"Where {pv}'s receive core went, {scen} (perf record -C 1, share of samples, "
                           f"median (min–max) over {len(ps)} rounds, {int(statistics.median([r['samples'] for r in ps]))} samples each):")
                out.append("")
                out.append("| function | share |")
                out.append("|---|---|")
                bpf = [sum(v for g, v in r["shares"].items() if g.startswith("BPF: ")) for r in ps]
                out.append(f"| **BPF programs, all functions** | {_cell(_summ([x * 100 for x in bpf]), ' %')} |")
                for g in groups:
                    out.append(f"| {g} | {_cell(_summ([r['shares'].get(g, 0) * 100 for r in ps]), ' %')} |")
                out.append("")

            def target(text, s, ok):
                targets.append(f"| {scen} | {text} | {_cell(s)} | {'n/a' if s is None else ('met' if ok(s[0]) else 'MISSED')} |")

            if "sensor_ids" in variants:
                if scen == "syn_100kpps":
                    target("sensor ids: rx-core CPU/pkt ÷ nothing ≤ 1.2", rel("sensor_ids", "rx_ns_per_pkt"), lambda x: x <= 1.2)
                    target("sensor ids: first by_dst alert line ≤ 150 ms after the flood's first frame (ms)",
                           _summ(list(val("sensor_ids", "alert_latency_ms").values())), lambda x: x <= 150)
                if scen == "syn_max":
                    target("sensor ids: delivered ÷ nothing ≥ 0.95", rel("sensor_ids", "delivered_kpps"), lambda x: x >= 0.95)
                if scen == "synfin_max":
                    target("sensor ids: delivered ÷ nothing ≥ 0.9", rel("sensor_ids", "delivered_kpps"), lambda x: x >= 0.9)
                    lost = {k: val("sensor_ids", "perf_lost").get(k, 0) + val("sensor_ids", "output_errors").get(k, 0)
                            for k in val("sensor_ids", "perf_lost")}
                    target("sensor ids: alert records lost (perf lost + output errors) = 0", _summ(list(lost.values())),
                           lambda x: x == 0)
                    cs, hits = val("sensor_ids", "count_sum"), val("sensor_ids", "hits")
                    target("sensor ids: Σ alert-line count ÷ kernel matched (rule 100001) = 1",
                           _summ([cs[k] / hits[k] for k in cs if hits.get(k)]), lambda x: abs(x - 1) < 1e-9)
            if "sensor_ids" in variants and "sensor_ids_b" in variants:
                # An A/B of two builds (SENSOR_B), round by round: no target.
                for m, text in (("rx_ns_per_pkt", "rx-core CPU/pkt"), ("delivered_kpps", "delivered")):
                    out.append(f"A/B, {scen}: sensor_ids_b ÷ sensor_ids, {text}: "
                               f"{_cell(rel('sensor_ids_b', m, 'sensor_ids'), '×')}")
                out.append("")
            if "sensor_drop_blocked" in variants:
                target("drop mode, sources blocked: total CPU/pkt ÷ nothing attached (the stack passing) < 1",
                       rel("sensor_drop_blocked", "total_ns_per_pkt"), lambda x: x < 1)
                if "sensor_ids" in variants:
                    target("drop mode, sources blocked: total CPU/pkt ÷ sensor ids (the sensor passing) < 1",
                           rel("sensor_drop_blocked", "total_ns_per_pkt", "sensor_ids"), lambda x: x < 1)
            if "inspect_filter" in variants and "tcpdump_filter" in variants:
                target("inspect --filter ÷ tcpdump -nn, same filter (total CPU/pkt) ≤ 1",
                       rel("inspect_filter", "total_ns_per_pkt", "tcpdump_filter"), lambda x: x <= 1)
            if "inspect_all" in variants and "tcpdump_all" in variants:
                target("inspect unfiltered ÷ tcpdump -nn unfiltered (added CPU) ≤ 0.2",
                       added_ratio("inspect_all", "tcpdump_all"), lambda x: x <= 0.2)

    # ---- replay
    rp = [r for r in rows if r.get("section") == "replay"]
    if rp:
        rounds = sorted(set(r["round"] for r in rp))
        variants = list(dict.fromkeys(r["variant"] for r in rp))

        def rv(variant):
            return {r["round"]: r["value"] for r in rp if r["variant"] == variant}

        frames_n = rp[0].get("frames")
        out.append(f"### Offline: packets/s on a pcap of {frames_n:,} mixed frames, median (min–max) over {len(rounds)} rounds")
        out.append("")
        out.append("| tool | kpps | ÷ tcpdump -r -w /dev/null |")
        out.append("|---|---|---|")
        base = rv("tcpdump_copy")
        for v in variants:
            x = rv(v)
            r = _summ([x[k] / base[k] for k in rounds if k in x and k in base and base[k]])
            out.append(f"| {v} | {_cell(_summ([y / 1000 for y in x.values()]))} | {_cell(r, '×')} |")
        out.append("")
    if targets:
        out.append("### End-to-end targets (median, min–max)")
        out.append("")
        out.append("| flood | target | measured | |")
        out.append("|---|---|---|---|")
        out += targets
        out.append("")
    for n in notes:
        out.append(f"- **note**: {n['text']}")
    print("\n".join(out))


def main(argv):
    if len(argv) < 2:
        raise SystemExit(__doc__)
    cmd, args = argv[1], argv[2:]
    if cmd == "frames":
        cmd_frames(*args)
    elif cmd == "testrun":
        cmd_testrun(args[0], args[1], args[2], args[3], args[4:])
    elif cmd == "pairs":
        cmd_pairs(*args)
    elif cmd == "spoofed":
        cmd_spoofed(args[0], args[1], args[2], args[3:])
    elif cmd == "rules":
        cmd_rules(*args)
    elif cmd == "pcap":
        cmd_pcap(*args)
    elif cmd == "snap":
        snap(args)
    elif cmd == "metrics":
        cmd_metrics(*args)
    elif cmd == "fnmlog":
        cmd_fnmlog(*args)
    elif cmd == "alerts":
        cmd_alerts(*args)
    elif cmd == "record":
        cmd_record(*args)
    elif cmd == "profile":
        cmd_profile(*args)
    elif cmd == "profrun":
        cmd_profrun(*args)
    elif cmd == "attach-pass":
        cmd_attach_pass(*args)
    elif cmd == "watch":
        cmd_watch(*args)
    elif cmd == "report":
        cmd_report(*args)
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
