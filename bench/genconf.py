#!/usr/bin/env python3
"""Config generator for bench/run.sh (standard library only).

    genconf.py upstream --dir D --port P
        D/nginx.conf: the upstream nginx (fixed "hello\\n" body).
    genconf.py nginx --dir D --port P --upstream-port U --routes N [--tls CERT KEY]
                     [--location-extra TEXT]
        D/nginx.conf: nginx as the reverse proxy under test.
    genconf.py gateway --dir D --port P --admin-port A --upstream-port U --routes N
                       [--tls CERT KEY] [--plugins JSON]
        D/bootstrap.yaml and D/config.yaml for `gateway run`.

The `nginx` and `gateway` commands print, as shell assignments, the request
that wrk must send so that the router has to find the route:
    REQ_HOST=...   (empty: no Host override)
    REQ_PATH=...

Route table with N > 1 (the same for nginx and the gateway): route i has the
host svc<i // 100>.bench.test (100 routes per host) and, by i % 3, an exact
URI /api/v<i>/items, a prefix /svc<i>/* or a parameter URI
/users/:id/items/<i>. The route wrk hits is a parameter route in the middle of
the table and in the middle of its host's routes (route 5051 of 10,000), not
the first one. With N = 1 the single route is `/*` on any host.

--plugins (gateway) and --location-extra (nginx) attach extra work to the
routes wrk hits: the hook for scenarios with a plugin chain.
"""

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROUTES_PER_HOST = 100
PARAM_VALUE = "42"  # what wrk sends for the `:id` segment


def template(name, values):
    with open(os.path.join(HERE, "nginx", name), encoding="utf-8") as f:
        text = f.read()
    for key, value in values.items():
        text = text.replace("@" + key + "@", value)
    if "@" in "".join(l for l in text.splitlines() if not l.lstrip().startswith("#")):
        leftover = [l for l in text.splitlines() if "@" in l and not l.lstrip().startswith("#")]
        sys.exit("genconf: unreplaced placeholder in %s: %s" % (name, leftover[0]))
    return text


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


# ---------------------------------------------------------------- the routes


def route_host(i):
    return "svc%d.bench.test" % (i // ROUTES_PER_HOST)


def route_uri(i):
    """(form, gateway URI, nginx location) of route i."""
    form = i % 3
    if form == 0:
        return "exact", "/api/v%d/items" % i, "location = /api/v%d/items" % i
    if form == 1:
        # `^~`: a matching prefix skips the regex locations, as a radix
        # router would.
        return "prefix", "/svc%d/*" % i, "location ^~ /svc%d/" % i
    return "param", "/users/:id/items/%d" % i, "location ~ ^/users/[^/]+/items/%d$" % i


def target_index(n):
    """The route wrk hits: a parameter route in the middle of the table."""
    if n < 2 * ROUTES_PER_HOST:
        t = n // 2
    else:
        t = (n // 2) - (n // 2) % ROUTES_PER_HOST + ROUTES_PER_HOST // 2
    while t % 3 != 2:
        t += 1
    if t >= n:
        sys.exit("genconf: --routes %d is too small for a table (use 1, or at least 3)" % n)
    return t


def request_for(n):
    """(Host header, path) that wrk sends."""
    if n == 1:
        return "", "/"
    t = target_index(n)
    return route_host(t), "/users/%s/items/%d" % (PARAM_VALUE, t)


def print_request(n):
    host, path = request_for(n)
    print("REQ_HOST=%s" % host)
    print("REQ_PATH=%s" % path)


# ------------------------------------------------------------------- nginx


def cmd_upstream(a):
    write(os.path.join(a.dir, "nginx.conf"),
          template("upstream.conf.in", {"DIR": a.dir, "UPSTREAM_PORT": str(a.port)}))


def cmd_nginx(a):
    listen = "listen 127.0.0.1:%d%s" % (a.port, " ssl" if a.tls else "")
    # The rest of what a location does is set once at the http level
    # (proxy.conf.in) and inherited by every location: nginx then keeps one
    # compiled copy of the headers, not one per location. A location extra
    # with a proxy_set_header of its own would lose the inherited ones.
    proxy = "proxy_pass http://origin;"
    extra = (" " + a.location_extra.strip()) if a.location_extra else ""
    out = []
    if a.tls:
        out.append("    ssl_certificate %s;" % a.tls[0])
        out.append("    ssl_certificate_key %s;" % a.tls[1])
        out.append("    ssl_protocols TLSv1.2 TLSv1.3;")
        out.append("    ssl_session_cache shared:SSL:1m;")
        out.append("")
    if a.routes == 1:
        out.append("    server {")
        out.append("        %s default_server backlog=4096;" % listen)
        out.append("        server_name _;")
        out.append("        location / { %s%s }" % (proxy, extra))
        out.append("    }")
    else:
        t = target_index(a.routes)
        out.append("    server {")
        out.append("        %s default_server backlog=4096;" % listen)
        out.append("        server_name _;")
        out.append("        location / { return 404; }")
        out.append("    }")
        for first in range(0, a.routes, ROUTES_PER_HOST):
            out.append("    server {")
            out.append("        %s;" % listen)
            out.append("        server_name %s;" % route_host(first))
            for i in range(first, min(first + ROUTES_PER_HOST, a.routes)):
                _, _, location = route_uri(i)
                out.append("        %s { %s%s }" % (location, proxy, extra if i == t else ""))
            out.append("    }")
    write(os.path.join(a.dir, "nginx.conf"),
          template("proxy.conf.in", {"DIR": a.dir, "UPSTREAM_PORT": str(a.upstream_port),
                                     "SERVERS": "\n".join(out)}))
    print_request(a.routes)


# ----------------------------------------------------------------- gateway


def q(s):
    """A YAML double-quoted scalar (JSON strings are valid YAML)."""
    return json.dumps(s)


def cmd_gateway(a):
    b = ["# Generated by bench/genconf.py.", "node_id: bench", "threads: 1", "listeners:"]
    if a.tls:
        with open(a.tls[0], encoding="utf-8") as f:
            cert = f.read()
        with open(a.tls[1], encoding="utf-8") as f:
            key = f.read()
        b.append("  - name: https")
        b.append("    address: %s" % q("127.0.0.1:%d" % a.port))
        b.append("    tls:")
        b.append("      default_certificate:")
        b.append("        cert: %s" % q(cert))
        b.append("        key: %s" % q(key))
    else:
        b.append("  - name: http")
        b.append("    address: %s" % q("127.0.0.1:%d" % a.port))
    b += [
        "admin:",
        "  address: %s" % q("127.0.0.1:%d" % a.admin_port),
        "store:",
        "  file:",
        "    path: config.yaml",
        "logging:",
        "  level: WARN",
        "  access_log:",
        "    disabled: true",
        "shutdown:",
        "  graceful_timeout: 0s",
    ]
    write(os.path.join(a.dir, "bootstrap.yaml"), "\n".join(b) + "\n")

    plugins = None
    if a.plugins:
        plugins = json.dumps(json.loads(a.plugins))  # validate, one line
    c = ["# Generated by bench/genconf.py.", "upstreams:", "  - id: origin",
         "    nodes:", "      - { host: 127.0.0.1, port: %d }" % a.upstream_port, "routes:"]
    if a.routes == 1:
        c += ["  - id: all", '    uris: ["/*"]', "    upstream_id: origin"]
        if plugins:
            c.append("    plugins: %s" % plugins)
    else:
        t = target_index(a.routes)
        for i in range(a.routes):
            _, uri, _ = route_uri(i)
            c.append("  - id: r%d" % i)
            c.append("    hosts: [%s]" % q(route_host(i)))
            c.append("    uris: [%s]" % q(uri))
            c.append("    upstream_id: origin")
            if plugins and i == t:
                c.append("    plugins: %s" % plugins)
    if a.config_extra:
        c.append(a.config_extra.rstrip("\n"))
    write(os.path.join(a.dir, "config.yaml"), "\n".join(c) + "\n")
    print_request(a.routes)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    u = sub.add_parser("upstream")
    u.add_argument("--dir", required=True)
    u.add_argument("--port", type=int, required=True)

    for name in ("nginx", "gateway"):
        s = sub.add_parser(name)
        s.add_argument("--dir", required=True)
        s.add_argument("--port", type=int, required=True)
        s.add_argument("--upstream-port", type=int, required=True)
        s.add_argument("--routes", type=int, default=1)
        s.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
        if name == "nginx":
            s.add_argument("--location-extra", default="")
        else:
            s.add_argument("--admin-port", type=int, required=True)
            s.add_argument("--plugins", default="", help="JSON object: the hit route's `plugins`")
            s.add_argument("--config-extra", default="", help="YAML appended to the config (e.g. consumers)")

    a = p.parse_args()
    a.dir = os.path.abspath(a.dir)
    if getattr(a, "tls", None):
        a.tls = [os.path.abspath(x) for x in a.tls]
    if getattr(a, "routes", 1) < 1:
        sys.exit("genconf: --routes must be at least 1")
    {"upstream": cmd_upstream, "nginx": cmd_nginx, "gateway": cmd_gateway}[a.cmd](a)


if __name__ == "__main__":
    main()
