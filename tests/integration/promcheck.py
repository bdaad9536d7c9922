#!/usr/bin/python3
"""A strict checker for the Prometheus text exposition format, version 0.0.4.

    /usr/bin/python3 promcheck.py [FILE]     # FILE or standard input; exit 0 clean, 1 problems

As a module:

    fams, problems = promcheck.check(text)          # the format itself
    problems += promcheck.conventions(fams)         # HELP + TYPE everywhere, _total counters, ...

check() follows the format's specification
(prometheus.io/docs/instrumenting/exposition_formats/, "Text-based format") and
reports, with line numbers, everything an ingesting Prometheus would reject or
misread:

- bytes: UTF-8, "\\n" line ends (no "\\r"), the last line ends with "\\n";
- "# HELP name text" (escapes \\\\ and \\n only) and "# TYPE name type" (counter, gauge,
  histogram, summary, untyped): at most one of each per name, TYPE before the
  family's first sample;
- samples: name [a-zA-Z_:][a-zA-Z0-9_:]*, labels {name="value",...} with names
  [a-zA-Z_][a-zA-Z0-9_]* (not __reserved), values escaped with \\\\ \\" \\n only,
  no duplicate label name, a float value (decimal, NaN, +Inf, -Inf), an optional
  integer timestamp;
- every family is one contiguous group; no series (name + label set) twice;
- counters: one sample name (the family name), value >= 0 and not NaN;
  gauges/untyped: one sample name (the family name);
- histograms: only NAME_bucket / NAME_sum / NAME_count; every bucket has an "le"
  label that parses as a float, no other sample has one; per label set: buckets
  in increasing le order, cumulative (non-decreasing), a +Inf bucket equal to
  NAME_count, exactly one NAME_sum and NAME_count; counts >= 0;
- summaries: NAME{quantile=...} (0 <= q <= 1), NAME_sum, NAME_count per label set.

conventions() adds the rules of the Prometheus naming guide this project
commits to: every family has HELP and TYPE, names and label names are
snake_case, counters end in _total and nothing else does, only histograms and
summaries use the _bucket / _sum / _count suffixes or an le / quantile label.

Standard library only (Debian's /usr/bin/python3).
"""
import math
import re
import sys

NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
FLOAT_RE = re.compile(r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|Inf|inf)\Z|NaN\Z")
INT_RE = re.compile(r"-?[0-9]+\Z")
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")
BLANK = " \t"


class Sample:
    __slots__ = ("name", "labels", "value", "timestamp", "line")

    def __init__(self, name, labels, value, timestamp, line):
        self.name = name
        self.labels = labels        # dict
        self.value = value          # float
        self.timestamp = timestamp  # int or None
        self.line = line

    def key(self):
        return (self.name, tuple(sorted(self.labels.items())))

    def __repr__(self):
        return "%s%s %r" % (self.name, self.labels or "", self.value)


class Family:
    def __init__(self, name):
        self.name = name
        self.type = None
        self.help = None
        self.samples = []
        self.first_line = None

    def get(self, suffix="", **labels):
        """Values of the samples named family+suffix whose labels include labels."""
        want = self.name + suffix
        return [s.value for s in self.samples if s.name == want and
                all(s.labels.get(k) == v for k, v in labels.items())]

    def __repr__(self):
        return "<%s %s, %d samples>" % (self.type, self.name, len(self.samples))


def _parse_float(tok):
    if not FLOAT_RE.match(tok):
        return None
    if tok in ("Inf", "+Inf", "inf", "+inf"):
        return math.inf
    if tok in ("-Inf", "-inf"):
        return -math.inf
    if tok == "NaN":
        return math.nan
    return float(tok)


def _unescape_help(s):
    out = []
    i = 0
    while i < len(s):
        c = s[i]
        if c == "\\":
            if i + 1 >= len(s):
                raise ValueError("HELP text ends with a lone backslash")
            n = s[i + 1]
            if n == "\\":
                out.append("\\")
            elif n == "n":
                out.append("\n")
            else:
                raise ValueError("HELP text has an invalid escape \\%s (only \\\\ and \\n)" % n)
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def _skip_blank(s, i):
    while i < len(s) and s[i] in BLANK:
        i += 1
    return i


def _parse_labels(s, i):
    """s[i] == '{'.  Returns (labels dict, index after '}').  Raises ValueError."""
    labels = {}
    i += 1
    while True:
        i = _skip_blank(s, i)
        if i < len(s) and s[i] == "}":
            return labels, i + 1
        m = LABEL_RE.match(s, i)
        if not m:
            raise ValueError("invalid label name at column %d: %r" % (i + 1, s[i:i + 20]))
        lname = m.group(0)
        if lname.startswith("__"):
            raise ValueError("label name %r is reserved (starts with __)" % lname)
        if lname in labels:
            raise ValueError("label %r appears twice" % lname)
        i = _skip_blank(s, m.end())
        if i >= len(s) or s[i] != "=":
            raise ValueError("expected '=' after label name %r" % lname)
        i = _skip_blank(s, i + 1)
        if i >= len(s) or s[i] != '"':
            raise ValueError("label %r: value not in double quotes" % lname)
        i += 1
        val = []
        while True:
            if i >= len(s):
                raise ValueError("label %r: unterminated value" % lname)
            c = s[i]
            if c == "\\":
                if i + 1 >= len(s):
                    raise ValueError("label %r: value ends with a lone backslash" % lname)
                n = s[i + 1]
                if n == "\\":
                    val.append("\\")
                elif n == '"':
                    val.append('"')
                elif n == "n":
                    val.append("\n")
                else:
                    raise ValueError("label %r: invalid escape \\%s (only \\\\ \\\" \\n)" % (lname, n))
                i += 2
                continue
            if c == '"':
                i += 1
                break
            val.append(c)
            i += 1
        labels[lname] = "".join(val)
        i = _skip_blank(s, i)
        if i < len(s) and s[i] == ",":
            i += 1
            continue
        if i < len(s) and s[i] == "}":
            return labels, i + 1
        raise ValueError("expected ',' or '}' after label %r" % lname)


def _family_of(sample_name, fams):
    """The family a sample belongs to: a declared histogram/summary for its suffix, else
    the family of its own name."""
    for suf in ("_bucket", "_sum", "_count"):
        if sample_name.endswith(suf):
            base = sample_name[:-len(suf)]
            f = fams.get(base)
            if f is not None and f.type in ("histogram", "summary"):
                if suf == "_bucket" and f.type == "summary":
                    continue
                return base
    return sample_name


def check(text):
    """Parse a whole exposition strictly.  Returns (families {name: Family} in order of
    appearance, [problem strings with line numbers])."""
    probs = []
    fams = {}
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            return {}, ["not UTF-8: %s" % e]
    if "\r" in text:
        probs.append("line %d: carriage return (lines end with \\n only)" % (text[:text.index("\r")].count("\n") + 1))
    if not text:
        probs.append("empty exposition")
        return fams, probs
    if not text.endswith("\n"):
        probs.append("the last line does not end with a line feed")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    current = None          # name of the family whose group is open
    closed = set()          # families whose group has ended
    seen = {}               # series key -> line
    help_seen = {}
    type_seen = {}

    def enter(name, lno):
        nonlocal current
        if current == name:
            return
        if name in closed:
            probs.append("line %d: %s continues after other families' lines (every family must be "
                         "one group)" % (lno, name))
        if current is not None:
            closed.add(current)
        current = name
        f = fams.get(name)
        if f is None:
            f = fams[name] = Family(name)
        if f.first_line is None:
            f.first_line = lno

    for lno, raw in enumerate(lines, 1):
        ln = raw.replace("\r", "")
        stripped = ln.strip(BLANK)
        if not stripped:
            continue
        if stripped.startswith("#"):
            body = stripped[1:]
            toks = body.lstrip(BLANK)
            parts = re.split(r"[ \t]+", toks, maxsplit=2) if toks else []
            if len(parts) >= 1 and parts[0] in ("HELP", "TYPE"):
                kw = parts[0]
                if len(parts) < 2 or not parts[1]:
                    probs.append("line %d: # %s without a metric name" % (lno, kw))
                    continue
                name = parts[1]
                if not NAME_RE.fullmatch(name):
                    probs.append("line %d: # %s: invalid metric name %r" % (lno, kw, name))
                    continue
                enter(name, lno)
                f = fams[name]
                if kw == "HELP":
                    if name in help_seen:
                        probs.append("line %d: second HELP line for %s (first at line %d)" %
                                     (lno, name, help_seen[name]))
                        continue
                    help_seen[name] = lno
                    # The docstring is everything after the name and one separator, verbatim.
                    m = re.match(r"[ \t]*#[ \t]*HELP[ \t]+\S+(?:[ \t]+(.*))?$", ln)
                    doc = (m.group(1) or "") if m else ""
                    try:
                        f.help = _unescape_help(doc)
                    except ValueError as e:
                        probs.append("line %d: %s: %s" % (lno, name, e))
                        f.help = doc
                else:
                    if name in type_seen:
                        probs.append("line %d: second TYPE line for %s (first at line %d)" %
                                     (lno, name, type_seen[name]))
                        continue
                    type_seen[name] = lno
                    typ = parts[2].strip(BLANK) if len(parts) > 2 else ""
                    if typ not in TYPES:
                        probs.append("line %d: %s: unknown type %r" % (lno, name, typ))
                        continue
                    if f.samples:
                        probs.append("line %d: TYPE for %s after its first sample (line %d)" %
                                     (lno, name, f.samples[0].line))
                    f.type = typ
            continue   # any other comment is ignored
        # a sample line
        m = NAME_RE.match(stripped)
        if not m:
            probs.append("line %d: not a sample, comment or blank line: %r" % (lno, ln[:80]))
            continue
        sname = m.group(0)
        i = m.end()
        labels = {}
        try:
            j = _skip_blank(stripped, i)
            if j < len(stripped) and stripped[j] == "{":
                labels, i = _parse_labels(stripped, j)
        except ValueError as e:
            probs.append("line %d: %s: %s" % (lno, sname, e))
            continue
        rest = stripped[i:]
        if rest and rest[0] not in BLANK:
            probs.append("line %d: %s: no blank between the name/labels and the value: %r" %
                         (lno, sname, rest[:40]))
            continue
        toks = rest.split()
        if len(toks) not in (1, 2):
            probs.append("line %d: %s: want a value and an optional timestamp, got %r" % (lno, sname, toks))
            continue
        val = _parse_float(toks[0])
        if val is None:
            probs.append("line %d: %s: value %r is not a float" % (lno, sname, toks[0]))
            continue
        ts = None
        if len(toks) == 2:
            if not INT_RE.match(toks[1]):
                probs.append("line %d: %s: timestamp %r is not an integer" % (lno, sname, toks[1]))
                continue
            ts = int(toks[1])
        fname = _family_of(sname, fams)
        enter(fname, lno)
        f = fams[fname]
        s = Sample(sname, labels, val, ts, lno)
        k = s.key()
        if k in seen:
            probs.append("line %d: series %s%s repeats line %d" % (lno, sname, labels or "", seen[k]))
        seen[k] = lno
        f.samples.append(s)

    for f in fams.values():
        probs.extend(_check_family(f))
    return fams, probs


def _lkey(labels, drop):
    return tuple(sorted((k, v) for k, v in labels.items() if k != drop))


def _check_family(f):
    probs = []
    t = f.type or "untyped"
    where = "%s (%s, line %s)" % (f.name, t, f.first_line)
    if t in ("counter", "gauge", "untyped"):
        for s in f.samples:
            if s.name != f.name:
                probs.append("line %d: sample %s in %s family %s" % (s.line, s.name, t, f.name))
            if t == "counter" and (math.isnan(s.value) or s.value < 0):
                probs.append("line %d: counter %s has value %r" % (s.line, s.name, s.value))
        return probs
    if t == "summary":
        groups = {}
        for s in f.samples:
            if s.name == f.name:
                q = s.labels.get("quantile")
                qv = _parse_float(q) if q is not None else None
                if qv is None or not (0 <= qv <= 1):
                    probs.append("line %d: %s: quantile label %r" % (s.line, where, q))
                groups.setdefault(_lkey(s.labels, "quantile"), {}).setdefault("q", []).append(s)
            elif s.name in (f.name + "_sum", f.name + "_count"):
                if "quantile" in s.labels:
                    probs.append("line %d: %s carries a quantile label" % (s.line, s.name))
                groups.setdefault(_lkey(s.labels, None), {}).setdefault(s.name[len(f.name):], []).append(s)
            else:
                probs.append("line %d: sample %s in summary %s" % (s.line, s.name, f.name))
        for lk, g in groups.items():
            for suf in ("_sum", "_count"):
                if len(g.get(suf, [])) != 1:
                    probs.append("%s%s: %d %s samples, want 1" % (where, dict(lk), len(g.get(suf, [])), suf))
        return probs
    # histogram
    groups = {}
    for s in f.samples:
        suf = s.name[len(f.name):] if s.name.startswith(f.name) else None
        if suf not in ("_bucket", "_sum", "_count"):
            probs.append("line %d: sample %s in histogram %s" % (s.line, s.name, f.name))
            continue
        if suf == "_bucket":
            le = s.labels.get("le")
            if le is None:
                probs.append("line %d: %s without an le label" % (s.line, s.name))
                continue
            lev = _parse_float(le)
            if lev is None or math.isnan(lev):
                probs.append("line %d: %s: le=%r is not a float" % (s.line, s.name, le))
                continue
            g = groups.setdefault(_lkey(s.labels, "le"), {"b": [], "_sum": [], "_count": []})
            g["b"].append((lev, s))
        else:
            if "le" in s.labels:
                probs.append("line %d: %s carries an le label" % (s.line, s.name))
            groups.setdefault(_lkey(s.labels, None), {"b": [], "_sum": [], "_count": []})[suf].append(s)
        if math.isnan(s.value) or (suf != "_sum" and s.value < 0):
            probs.append("line %d: %s has value %r" % (s.line, s.name, s.value))
        if suf != "_sum" and math.isfinite(s.value) and s.value != int(s.value):
            probs.append("line %d: %s is a count but has a fraction: %r" % (s.line, s.name, s.value))
    for lk, g in groups.items():
        lab = dict(lk) or ""
        b = g["b"]
        if not b:
            probs.append("%s%s: no buckets" % (where, lab))
        les = [x for x, _ in b]
        if les != sorted(les) or len(set(les)) != len(les):
            probs.append("%s%s: buckets not in strictly increasing le order: %s" % (where, lab, les))
        if b and b[-1][0] != math.inf:
            probs.append("%s%s: no le=\"+Inf\" bucket" % (where, lab))
        prev = -1
        for lev, s in b:
            if s.value < prev:
                probs.append("line %d: %s{le=%r} %r < the previous bucket %r (buckets are cumulative)" %
                             (s.line, s.name, s.labels["le"], s.value, prev))
            prev = s.value
        for suf in ("_sum", "_count"):
            if len(g[suf]) != 1:
                probs.append("%s%s: %d %s%s samples, want 1" % (where, lab, len(g[suf]), f.name, suf))
        if g["_count"] and b and b[-1][0] == math.inf and b[-1][1].value != g["_count"][0].value:
            probs.append("%s%s: +Inf bucket %r != %s_count %r" % (where, lab, b[-1][1].value, f.name,
                                                                 g["_count"][0].value))
    return probs


SNAKE_RE = re.compile(r"[a-z_][a-z0-9_]*\Z")


def conventions(fams):
    """Naming rules on top of the format: HELP + TYPE for every family, snake_case, counters
    end in _total and nothing else does, reserved suffixes and labels only where they belong."""
    probs = []
    for f in fams.values():
        if f.type is None:
            probs.append("%s: no # TYPE line" % f.name)
        if f.help is None:
            probs.append("%s: no # HELP line" % f.name)
        elif not f.help.strip():
            probs.append("%s: empty HELP text" % f.name)
        if f.type == "untyped":
            probs.append("%s: untyped" % f.name)
        if not SNAKE_RE.match(f.name):
            probs.append("%s: name is not snake_case" % f.name)
        if f.type == "counter" and not f.name.endswith("_total"):
            probs.append("%s: counter name does not end in _total" % f.name)
        if f.type != "counter" and f.name.endswith("_total"):
            probs.append("%s: %s name ends in _total" % (f.name, f.type))
        if f.type not in ("histogram", "summary"):
            for suf in ("_bucket", "_sum", "_count"):
                if f.name.endswith(suf):
                    probs.append("%s: %s name ends in %s" % (f.name, f.type, suf))
        for s in f.samples:
            for k in s.labels:
                if not SNAKE_RE.match(k):
                    probs.append("line %d: label name %r is not snake_case" % (s.line, k))
                if k == "le" and f.type != "histogram":
                    probs.append("line %d: le label outside a histogram bucket" % s.line)
                if k == "quantile" and f.type != "summary":
                    probs.append("line %d: quantile label outside a summary" % s.line)
    return probs


def main():
    if len(sys.argv) > 2:
        print("usage: promcheck.py [FILE]", file=sys.stderr)
        return 2
    data = open(sys.argv[1], "rb").read() if len(sys.argv) == 2 else sys.stdin.buffer.read()
    fams, probs = check(data)
    probs += conventions(fams)
    for p in probs:
        print(p)
    nsamples = sum(len(f.samples) for f in fams.values())
    print("%d families, %d samples, %d problems" % (len(fams), nsamples, len(probs)), file=sys.stderr)
    return 1 if probs else 0


if __name__ == "__main__":
    sys.exit(main())
