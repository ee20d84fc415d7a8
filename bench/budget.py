#!/usr/bin/env python3
"""Where one call's CPU goes: a `perf record -g` of the router (built with
frame pointers, so that user-space stacks unwind) folded into the components
of the SIP plane, each as a share of the router's CPU and as microseconds
per call.

    bench/budget.py perf.data CPU_SECONDS_PER_1000_CALLS [label]

    RUSTFLAGS="-C force-frame-pointers=yes" cargo build --release -p exum-router \
        --bin exum-router --target-dir target/fp
    EXUM_BENCH_WRAP="perf record -F 1999 -g -o /tmp/perf.data --" \
        EXUM_ROUTER=target/fp/release/exum-router target/release/compare 20000 1000 standard 1
    bench/budget.py /tmp/perf.data <the step's "CPU s / 1000 calls">

Each sample goes to one component: allocation and copies by the function the
sample is in (wherever they were called from); the rest by the first
component (in the order of COMPONENTS) that any frame of the stack belongs
to, so "policy" is everything under a policy call, the host's imports
included, and "send" is everything under `sendto`, the kernel's delivery to
the receiving socket included.
"""
import collections
import re
import subprocess
import sys

# By the function the sample is in.
LEAF = [
    ("allocation (mimalloc)", r"^(_?mi_|mi_|__rust_alloc|__rust_dealloc|__rust_realloc|__rustc::__rust_(alloc|dealloc|realloc)|_mi_)"),
    ("copies (memmove, memcpy)", r"^__mem(move|cpy|set)"),
]
# By any frame of the stack, first match wins.
COMPONENTS = [
    ("policy (sandbox and guest, the host's imports included)", r"PolicyVersion::call_with"),
    ("waiting for I/O (epoll and the sleep, parked workers)", r"park_internal|epoll_wait|park_condvar|park_timeout"),
    ("send (sendto, the kernel's delivery to the peer included)", r"__libc_sendto|sendto|sendmsg|UdpSocket>::send"),
    ("receive (recvfrom)", r"recvfrom|recv_from|recvmsg"),
    ("HMAC tags (branches, Record-Route)", r"sip::secret|ring::hmac|hmac::"),
    ("parse (received messages)", r"wire::Message::parse|Message::parse_or_return"),
    ("transaction table", r"sip::transaction::Table"),
    ("metrics", r"prometheus_client|exum_router::metrics"),
    ("tracing (spans, events)", r"tracing_core::|tracing_subscriber|tracing::span|Span::new|Span::record|Event::dispatch"),
    ("timers (tokio's wheel, the router's timers)", r"tokio::runtime::time|tokio::time|transaction::(server|client)"),
    ("policy epoch ticker", r"policy::engine::EpochTicker|epoch"),
    ("spawning tasks (one per transaction, its linger, each ACK)", r"tokio::task::spawn|bind_new_task|execute::spawn$"),
    ("building messages (forwarded requests, relayed and own responses)", r"forward::forwarded|wire::Edit|originate::response|wire::with_received|send_answer"),
    ("validation and classification (syntax, loops, dialogs)", r"proxy::validate|proxy::classify|check_dialog|model::syntax"),
    ("directory lookups and the decision's set-up", r"proxy::decide|control::directory"),
    ("proxy logic, the rest (transaction tasks, the receive loop)", r"exum_router::sip::proxy|exum_router::sip::transport|exum_router::control|exum_address"),
    ("task scheduling (tokio)", r"tokio::runtime::(task|scheduler)|tokio::sync"),
    ("page faults", r"exc_page_fault|asm_exc_page_fault"),
]


def samples(data):
    out = subprocess.run(["perf", "script", "-i", data, "-F", "comm,ip,sym"], capture_output=True, text=True,
                         check=True).stdout
    stack = []
    for line in out.splitlines():
        if not line.strip():
            if stack:
                yield stack
            stack = []
            continue
        if line[0] in " \t":
            parts = line.strip().split(" ", 1)
            if len(parts) == 2:
                stack.append(parts[1].rsplit(" (", 1)[0].split("+0x")[0])
    if stack:
        yield stack


def main():
    if len(sys.argv) < 3:
        print(__doc__)
        sys.exit(2)
    data, cpu_per_1000 = sys.argv[1], float(sys.argv[2])
    label = sys.argv[3] if len(sys.argv) > 3 else data
    count = collections.Counter()
    total = 0
    for stack in samples(data):
        total += 1
        leaf = stack[0]
        name = next((n for n, r in LEAF if re.search(r, leaf)), None)
        if name is None:
            frames = "\n".join(stack)
            name = next((n for n, r in COMPONENTS if re.search(r, frames)), None)
        if name is None:
            name = "kernel, other" if all(f.startswith(("[", "_", "do_", "entry_")) or "." not in f and "::" not in f
                                          for f in stack[:1]) else "other"
        count[name] += 1
    us = cpu_per_1000 * 1000.0
    print(f"### {label}: {us:.0f} µs of CPU per call ({total} samples)\n")
    print("| component | share | µs per call |")
    print("|---|---:|---:|")
    for name, n in count.most_common():
        print(f"| {name} | {n / total * 100:.1f}% | {n / total * us:.1f} |")


main()
