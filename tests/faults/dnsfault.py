#!/usr/bin/python3
"""A pinned resolver that misbehaves on demand (stdlib only), for the fault campaign.

    dnsfault.py LISTEN_IP MODE_FILE NAME=IP [NAME=IP ...]

Answers A queries for the names given (AAAA: no data) over UDP and TCP on
LISTEN_IP:53 with TTL 0, so every client lookup reaches it.  Before each
query it reads MODE_FILE (one word; missing = ok):

  ok         answer properly
  servfail   RCODE 2 (SERVFAIL)
  refused    RCODE 5 (REFUSED)
  truncated  UDP: an empty answer with TC set; TCP: refused (the connection is closed)
  oversized  UDP: 200 A records for the name (over 512 bytes, no EDNS)
  garbage    16 random bytes
  blackhole  no answer at all
"""
import random
import socket
import struct
import sys
import threading


def parse(q):
    """(id, flags, qname bytes, qtype, question section) or None."""
    if len(q) < 12:
        return None
    qid, flags, qd = struct.unpack("!HHH", q[:6])
    if qd != 1:
        return None
    i, labels = 12, []
    while i < len(q) and q[i] != 0:
        n = q[i]
        labels.append(q[i + 1:i + 1 + n])
        i += 1 + n
    if i + 5 > len(q):
        return None
    qtype = struct.unpack("!H", q[i + 1:i + 3])[0]
    return qid, flags, b".".join(labels).lower(), qtype, q[12:i + 5]


def answer(q, records, mode, udp):
    p = parse(q)
    if p is None:
        return None
    qid, flags, name, qtype, question = p
    rd = flags & 0x0100
    if mode == "blackhole":
        return None
    if mode == "garbage":
        return random.randbytes(16)
    if mode in ("servfail", "refused"):
        rcode = 2 if mode == "servfail" else 5
        return struct.pack("!HHHHHH", qid, 0x8000 | rd | 0x0080 | rcode, 1, 0, 0, 0) + question
    if mode == "truncated" and udp:
        return struct.pack("!HHHHHH", qid, 0x8000 | 0x0200 | rd | 0x0080, 1, 0, 0, 0) + question
    ip = records.get(name.decode("ascii", "replace"))
    if ip is None:
        return struct.pack("!HHHHHH", qid, 0x8000 | rd | 0x0080 | 3, 1, 0, 0, 0) + question
    rrs = []
    if qtype == 1:
        count = 200 if mode == "oversized" and udp else 1
        base = socket.inet_aton(ip)
        for k in range(count):
            addr = base if k == 0 else bytes([base[0], base[1], base[2], (base[3] + k) % 256])
            rrs.append(b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 0, 4) + addr)
    return struct.pack("!HHHHHH", qid, 0x8000 | rd | 0x0080, 1, len(rrs), 0, 0) + question + b"".join(rrs)


def mode_of(path):
    try:
        with open(path) as f:
            return f.read().strip() or "ok"
    except OSError:
        return "ok"


def serve_udp(sock, records, mode_file):
    while True:
        q, peer = sock.recvfrom(4096)
        a = answer(q, records, mode_of(mode_file), True)
        if a is not None:
            sock.sendto(a, peer)


def serve_tcp_conn(c, records, mode_file):
    with c:
        c.settimeout(5)
        try:
            n = struct.unpack("!H", c.recv(2))[0]
            q = b""
            while len(q) < n:
                d = c.recv(n - len(q))
                if not d:
                    return
                q += d
            mode = mode_of(mode_file)
            if mode == "truncated":
                return
            a = answer(q, records, mode, False)
            if a is not None:
                c.sendall(struct.pack("!H", len(a)) + a)
        except (OSError, struct.error):
            return


def serve_tcp(sock, records, mode_file):
    while True:
        c, _ = sock.accept()
        threading.Thread(target=serve_tcp_conn, args=(c, records, mode_file), daemon=True).start()


def main():
    listen, mode_file = sys.argv[1], sys.argv[2]
    records = dict(a.split("=", 1) for a in sys.argv[3:])
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind((listen, 53))
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    t.bind((listen, 53))
    t.listen(64)
    threading.Thread(target=serve_tcp, args=(t, records, mode_file), daemon=True).start()
    print("ready", flush=True)
    serve_udp(u, records, mode_file)


if __name__ == "__main__":
    main()
