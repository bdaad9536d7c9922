#!/usr/bin/env python3
"""Write the packaged default policy: policy/examples/default.yaml with the audit
records sent to /var/log/portcullis/audit.json (the systemd unit's LogsDirectory,
rotated by the logrotate snippet) instead of standard output.

usage: packaged-policy.py IN OUT
Fails if the example no longer has exactly one `output: "-"` line under `audit:`.
"""
import sys

AUDIT_FILE = "/var/log/portcullis/audit.json"


def main(src, dst):
    lines = open(src, encoding="utf-8").read().splitlines(keepends=True)
    hits = []
    section = None
    for i, line in enumerate(lines):
        if line[:1] not in (" ", "\t", "#", "\n", ""):
            section = line.split(":", 1)[0]
        if section == "audit" and line.strip() == 'output: "-"':
            hits.append(i)
    if len(hits) != 1:
        sys.exit(f"{src}: expected one audit output: \"-\" line, found {len(hits)}")
    i = hits[0]
    indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
    lines[i] = (f"{indent}# Packaged: the systemd unit's log directory, rotated by\n"
                f"{indent}# /etc/logrotate.d/portcullis (SIGUSR1 reopens the file).\n"
                f"{indent}output: \"{AUDIT_FILE}\"\n")
    head = ("# Installed by the portcullis package as /etc/portcullis/policy.yaml.\n"
            "# Check edits with `portcullis --check /etc/portcullis/policy.yaml`; the\n"
            "# service reloads the file when it changes.  See portcullis-policy(5).\n")
    with open(dst, "w", encoding="utf-8") as f:
        f.write(head + "".join(lines))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
