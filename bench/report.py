#!/usr/bin/env python3
"""Helpers of bench/run.sh (standard library only).

    report.py parse-wrk FILE
        Print `RPS P99_US REQUESTS ERRORS` from wrk's `--latency` output.
        ERRORS counts non-2xx/3xx responses and socket errors.
    report.py table DIR
        Print the results table and the ratio lines from DIR/rounds.tsv and
        DIR/meta.tsv (written by run.sh).
"""

import os
import re
import statistics
import sys

UNITS_US = {"us": 1.0, "ms": 1000.0, "s": 1e6, "m": 60e6, "h": 3600e6}


def to_us(text):
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m|h)", text.strip())
    if not m:
        raise ValueError("bad latency %r" % text)
    return float(m.group(1)) * UNITS_US[m.group(2)]


def parse_wrk(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    rps = re.search(r"^Requests/sec:\s+([0-9.]+)", text, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", text, re.M)
    req = re.search(r"^\s+(\d+) requests in ", text, re.M)
    if not (rps and p99 and req):
        sys.exit("report: cannot parse wrk output %s:\n%s" % (path, text))
    errors = 0
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    if m:
        errors += int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        errors += sum(int(x) for x in m.groups())
    print("%s %.0f %s %d" % (rps.group(1), to_us(p99.group(1)), req.group(1), errors))


# ------------------------------------------------------------------ table


def fmt_lat(us):
    return "%.0fus" % us if us < 1000 else "%.2fms" % (us / 1000)


def fmt_mb(kb):
    return "-" if kb is None else "%.1f MB" % (kb / 1024)


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def table(d):
    rounds = {}  # (scenario, contestant) -> list of dict, in round order
    scen_order, cont_order = [], {}
    with open(os.path.join(d, "rounds.tsv"), encoding="utf-8") as f:
        for line in f:
            s, c, r, rps, p99, reqs, cpu, cpu_pct, load_pct, errs, other, noisy = line.rstrip("\n").split("\t")
            if s not in scen_order:
                scen_order.append(s)
            cont_order.setdefault(s, [])
            if c not in cont_order[s]:
                cont_order[s].append(c)
            rounds.setdefault((s, c), []).append(dict(
                round=int(r), rps=float(rps), p99=float(p99), reqs=int(reqs), cpu=float(cpu),
                cpu_pct=float(cpu_pct), load_pct=load_pct, errs=int(errs), other=other,
                noisy=noisy == "1"))
    meta, compares, limits = {}, [], []
    with open(os.path.join(d, "meta.tsv"), encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if parts[0] == "contestant":
                _, s, c, rss0, rss1, desc = parts
                meta[(s, c)] = dict(rss0=int(rss0) if rss0 else None, rss1=int(rss1) if rss1 else None, desc=desc)
            elif parts[0] == "compare":
                compares.append(parts[1:])
            elif parts[0] == "limit":
                limits.append(parts[1:])

    hdr = ("scenario", "proxy", "req/s", "spread", "p99", "CPU us/req", "proxy CPU", "load CPU",
           "other CPU", "noisy", "RSS start", "RSS after", "errors")
    rows, chosen = [], {}
    for s in scen_order:
        for c in cont_order[s]:
            every = rounds[(s, c)]
            rs = [x for x in every if not x["noisy"]]
            if len(rs) < max(2, (len(every) + 1) // 2):
                rs = every
            chosen[(s, c)] = rs
            rps = [x["rps"] for x in rs]
            m = meta.get((s, c), {})
            loads = [float(x["load_pct"]) for x in rs if x["load_pct"] != "-"]
            others = [x["other"].split("/") for x in rs if x["other"] not in ("-", "-/-")]
            other_p = [float(o[0]) for o in others]
            other_l = [float(o[1]) for o in others if len(o) > 1 and o[1] != "-"]
            rows.append((
                s, c,
                "{:,.0f}".format(median(rps)),
                "±%.1f%%" % (50.0 * (max(rps) - min(rps)) / median(rps)) if len(rps) > 1 else "-",
                fmt_lat(median([x["p99"] for x in rs])),
                "%.1f" % median([x["cpu"] for x in rs]),
                "%.0f%%" % median([x["cpu_pct"] for x in rs]),
                "%.0f%%" % median(loads) if loads else "-",
                ("%.0f%%/%.0f%%" % (median(other_p), median(other_l))) if other_p and other_l else "-",
                "%d/%d" % (sum(x["noisy"] for x in every), len(every)),
                fmt_mb(m.get("rss0")), fmt_mb(m.get("rss1")),
                str(sum(x["errs"] for x in rs)),
            ))
    widths = [max(len(str(r[i])) for r in rows + [hdr]) for i in range(len(hdr))]

    def line(r):
        return "  ".join(str(v).ljust(widths[i]) if i < 2 else str(v).rjust(widths[i]) for i, v in enumerate(r))

    n_rounds = max(len(v) for v in rounds.values())
    print()
    print("Results: median of the clean rounds (of %d) per proxy, of all rounds when fewer than half are clean;" % n_rounds)
    print("spread = half the min..max range of req/s over those rounds")
    print(line(hdr))
    print("  ".join("-" * w for w in widths))
    last = None
    for r in rows:
        if last is not None and r[0] != last:
            print()
        print(line(r if r[0] != last else ("",) + r[1:]))
        last = r[0]

    unbound = [(s, c, median([x["cpu_pct"] for x in chosen[(s, c)]]))
               for s in scen_order for c in cont_order[s]]
    unbound = [u for u in unbound if u[2] < 90]
    if unbound:
        print()
        for s, c, pct in unbound:
            print("note: %s/%s was not proxy-bound (proxy CPU %.0f%%): its req/s and p99 say more about the load "
                  "(wrk, upstream, other processes) than about the proxy; compare CPU/req." % (s, c, pct))

    print()
    print("Ratios: median over the clean rounds of the ratio within each round [min..max over those rounds]")
    for s, num, den, label in compares:
        a, b = rounds.get((s, num)), rounds.get((s, den))
        if not a or not b:
            continue
        pairs = list(zip(a, b))
        clean = [(x, y) for x, y in pairs if not x["noisy"] and not y["noisy"]]
        if len(clean) >= max(2, (len(pairs) + 1) // 2):
            note = "" if len(clean) == len(pairs) else "  (%d clean rounds of %d)" % (len(clean), len(pairs))
            pairs = clean
        else:
            note = "  (NOISY: only %d clean rounds of %d, all used)" % (len(clean), len(pairs))
        for key, name in (("rps", "req/s"), ("cpu", "CPU/req"), ("p99", "p99")):
            rs = [x[key] / y[key] for x, y in pairs if y[key] > 0]
            if not rs:
                continue
            print("  %-16s %s %s = %.2f  [%.2f..%.2f]%s" % (s, label, name, median(rs), min(rs), max(rs), note))

    if limits:
        print()
        print("Memory (VmRSS of the gateway process right after start, then after the run):")
        for s, c, mb, label in limits:
            m = meta.get((s, c))
            if not m or m["rss0"] is None:
                continue
            ok = m["rss0"] / 1024 < float(mb)
            print("  %-30s RSS after start = %6.1f MB  (limit %s MB: %s), after the run = %s"
                  % (label, m["rss0"] / 1024, mb, "ok" if ok else "OVER", fmt_mb(m["rss1"])))

    print()
    print("proxy CPU: the proxy's CPU time / wall time; load CPU: how busy the wrk + upstream CPU was;")
    print("other CPU: share of the proxy's CPU / of the load CPU that other processes took;")
    print("noisy: rounds kept although noisy (other CPU above the limit after the repeats).")
    print("RSS: VmRSS of the proxy process; for nginx the sum of the Pss of its master and worker")
    print("(they share most pages: RSS would count them twice).")

    errs = sum(x["errs"] for v in rounds.values() for x in v)
    if errs:
        print()
        print("WARNING: %d failed requests (non-2xx/3xx or socket errors): the numbers above are not valid." % errs)
        return 1
    return 0


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "parse-wrk":
        parse_wrk(sys.argv[2])
    elif len(sys.argv) == 3 and sys.argv[1] == "table":
        sys.exit(table(sys.argv[2]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
