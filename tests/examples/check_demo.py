#!/usr/bin/python3
"""Runs the offline demo (demo/demo.py) as a user would and checks what it
prints: an allowed tunnel's audit record, a host_not_allowed refusal and a
blocked_address refusal for 169.254.169.254, the metadata listener never
reached, and a clean end. Keeps the demo from rotting.

    check_demo.py PORTCULLIS SRCDIR
"""
import json
import subprocess
import sys

binary, srcdir = sys.argv[1], sys.argv[2]
checks = []


def check(name, cond, detail=""):
    checks.append(cond)
    print(("ok - %s" if cond else "not ok - %s") % name + ("" if cond or not detail else ": " + detail),
          flush=True)


try:
    p = subprocess.run([sys.executable, srcdir + "/demo/demo.py", "--portcullis", binary],
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=120)
    out, rc = p.stdout.decode("utf-8", "replace"), p.returncode
except subprocess.TimeoutExpired as e:
    out, rc = (e.stdout or b"").decode("utf-8", "replace"), None
for line in out.splitlines():
    print("# " + line)

records = []
for line in out.splitlines():
    s = line.strip()
    if s.startswith("{"):
        try:
            records.append(json.loads(s))
        except ValueError:
            pass


def ev(r, k):
    return r.get("event", {}).get(k)


check("the demo exits 0 within its deadline", rc == 0, "exit status %r" % rc)
check("it prints an allowed tunnel's record",
      any(ev(r, "action") == "tunnel" and "allowed" in (ev(r, "type") or []) and
          r.get("destination", {}).get("domain") == "allowed.example" for r in records),
      "%d records printed" % len(records))
check("it prints a host_not_allowed refusal for other.example",
      any(ev(r, "reason") == "host_not_allowed" and r.get("destination", {}).get("domain") == "other.example"
          for r in records))
check("it prints a blocked_address refusal for the metadata address",
      any(ev(r, "reason") == "blocked_address" and r.get("destination", {}).get("ip") == "169.254.169.254"
          for r in records))
check("the client saw the reasons in Proxy-Status",
      'details="host_not_allowed"' in out and 'details="blocked_address"' in out)
check("the metadata listener was never reached", "connections it received: 0" in out)
check("every step of the demo passed", "5 passed, 0 failed" in out)
passed = sum(checks)
print("%d passed, %d failed" % (passed, len(checks) - passed))
sys.exit(0 if all(checks) else 1)
