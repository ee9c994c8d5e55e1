#!/usr/bin/env python3
"""Ground truth for a mirror comparison, taken by asking both instances directly.

For each request path it asks the primary, the shadow, and the primary again, and sorts the path
into one of three kinds:

- identical: status, headers (but those the gateway never compares) and body of the shadow equal
  the primary's;
- noise only: they differ, but only where the primary also differs from itself (a JSON field, or
  a header or a text line, that differs between the two primary answers);
- real: the shadow differs somewhere the primary does not.

It prints the counts and the real differences by field, so the gateway's mismatches and verdict
can be checked against them (false mismatches: the gateway's mismatches beyond the real count;
missed differences: real ones the gateway did not report).

    python3 scripts/ground_truth.py --primary http://127.0.0.1:8001 --shadow http://127.0.0.1:8002 \
        --datasette-requests 900 --seed 0x5eed
    python3 scripts/ground_truth.py --primary URL --shadow URL --paths paths.txt

`--datasette-requests N --seed S` makes the same request list as tests/tests/e2e/datasette.rs
(`requests(N, S)`) for its shop database; `--paths FILE` reads one path per line.
"""

import argparse
import collections
import difflib
import json
import re
import urllib.error
import urllib.parse
import urllib.request

MASK = (1 << 64) - 1


def datasette_requests(n, seed):
    """The request list of tests/tests/e2e/datasette.rs, for the same n and seed."""
    state = seed

    def nxt(below):
        nonlocal state
        state ^= (state << 13) & MASK
        state ^= state >> 7
        state ^= (state << 17) & MASK
        return state % below

    def pick(options, r):
        return options[r % len(options)]

    paths = []
    for _ in range(n):
        customer, order, r = nxt(200) + 1, nxt(1000) + 1, nxt(1000)
        status = pick(["new", "paid", "shipped"], r)
        city = pick(["Oslo", "Lima", "Pune", "Kobe"], r)
        k = nxt(22)
        paths.append({
            0: f"/shop/orders.json?_size={[5, 10, 20, 50][r % 4]}",
            1: f"/shop/orders.json?status={status}&_size=10",
            2: "/shop/orders.json?_sort=total&_size=10",
            3: f"/shop/orders.json?_sort_desc=placed&_size=5&customer_id={customer}",
            4: f"/shop/orders.json?total__gt={r % 80 + 10}&_size=10",
            5: "/shop/orders.json?_facet=status&_size=0",
            6: f"/shop/orders.json?_size=10&_next={r % 900 + 1}",
            7: f"/shop/customers.json?city={city}",
            8: f"/shop/customers/{customer}.json",
            9: f"/shop/customers/{customer}.json",
            10: f"/shop/orders/{order}.json",
            11: f"/shop/customers/{customer}",
            12: f"/shop/orders/{order}",
            13: f"/shop/orders?status={status}",
            14: "/shop/customers?_sort=name",
            15: pick(["/shop", "/", "/shop.json"], r),
            16: "/shop/orders.csv?_size=20&status=paid",
            17: f"/shop/customers.csv?_size={[10, 50][r % 2]}",
            18: "/shop.json?sql=select+status,count(*)+from+orders+group+by+status",
            19: f"/shop?sql=select+*+from+customers+where+id+%3C+{customer}+limit+5",
            20: "/shop/nope.json",
        }.get(k, f"/shop/customers/9{customer}99.json"))
    return paths


def fetch(base, path, host):
    # The same Host to both, as the gateway sends them: applications that build absolute URLs
    # from it (Datasette's next_url, toggle_url) then answer alike.
    request = urllib.request.Request(base.rstrip("/") + path, headers={"Host": host})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=30) as response:
            return response.status, headers_of(response), response.read()
    except urllib.error.HTTPError as error:
        return error.code, headers_of(error), error.read()


# Headers the gateway never compares (they differ on every call, or belong to one connection).
UNCOMPARED = {"date", "server", "x-request-id", "age", "connection", "keep-alive", "transfer-encoding", "content-length"}


def headers_of(response):
    return {k.lower(): v for k, v in response.headers.items() if k.lower() not in UNCOMPARED}


def header_fields(a, b):
    return {f"header:{k}" for k in set(a) | set(b) if a.get(k) != b.get(k)}


def flatten(value, path="$"):
    """JSON as {path: leaf}, array indices written [*] as the gateway names field families."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            out.update(flatten(item, f"{path}.{key}"))
        return out
    if isinstance(value, list):
        out = {}
        for index, item in enumerate(value):
            for key, leaf in flatten(item, f"{path}[{index}]").items():
                out[key] = leaf
        out[f"{path}#length"] = len(value)
        return out
    return {path: value}


def differing(a, b):
    """The fields (JSON paths, or text lines) in which two bodies differ."""
    try:
        x, y = flatten(json.loads(a)), flatten(json.loads(b))
        return {re.sub(r"\[\d+\]", "[*]", k) for k in set(x) | set(y) if x.get(k) != y.get(k)}
    except ValueError:
        lines_a, lines_b = a.decode(errors="replace").splitlines(), b.decode(errors="replace").splitlines()
        fields = set()
        for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, lines_a, lines_b, autojunk=False).get_opcodes():
            if tag != "equal":
                # A line named by its text with numbers written {} (as the gateway names text).
                for line in lines_a[i1:i2] + lines_b[j1:j2]:
                    fields.add("text:" + re.sub(r"\d+(\.\d+)?", "{}", line.strip())[:80])
        return fields


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--primary", required=True)
    parser.add_argument("--shadow", required=True)
    parser.add_argument("--paths")
    parser.add_argument("--datasette-requests", type=int)
    parser.add_argument("--seed", type=lambda s: int(s, 0), default=0x5EED)
    args = parser.parse_args()
    if args.paths:
        with open(args.paths) as f:
            paths = [line.strip() for line in f if line.strip()]
    else:
        paths = datasette_requests(args.datasette_requests or 900, args.seed)
    kinds = collections.Counter()
    real_fields = collections.Counter()
    for path in paths:
        host = urllib.parse.urlsplit(args.primary).netloc
        first, shadow, again = fetch(args.primary, path, host), fetch(args.shadow, path, host), fetch(args.primary, path, host)
        if first == shadow:
            kinds["identical"] += 1
            continue
        noise = differing(first[2], again[2]) | header_fields(first[1], again[1]) | ({"status"} if first[0] != again[0] else set())
        seen = differing(first[2], shadow[2]) | header_fields(first[1], shadow[1]) | ({"status"} if first[0] != shadow[0] else set())
        real = seen - noise
        if real:
            kinds["real"] += 1
            real_fields.update(real)
        else:
            kinds["noise only"] += 1
    print(json.dumps({"requests": len(paths), "kinds": kinds, "real_fields": real_fields.most_common(15)}, indent=1))


if __name__ == "__main__":
    main()
