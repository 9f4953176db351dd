#!/usr/bin/env python3
"""The structure the folders promise, checked from the includes.

  1. No include cycle between modules. A module is a file pair x.c/x.h;
     a .c file whose first include is y.h or y-int.h with its name starting
     "y_" (engine_ops.c) belongs to module y.
  2. The routing core (controller/routing/) does no I/O: nothing it
     includes, directly or through other headers, is libuv, libpq, OpenSSL,
     libcurl, the link layer, the HTTP server or systemd, and it includes nothing of the
     controller's other rooms (net/, store/, web/, notify/).
  3. common/ is shared by every program: it includes nothing of
     controller/ or site-agent/.
  4. No source file is over MAX_LINES lines: those of rules 1-3 (common/,
     controller/, site-agent/) and the tests' C files (SIZE_ONLY_ROOTS:
     tests/unit, tests/tools, tests/fuzz), which rules 1-3 do not cover.

Usage: check_layers.py SOURCE_DIR. Exit 0 when all hold; otherwise each
broken rule is printed with the files involved and the exit status is 1.
"""
import os
import re
import sys

MAX_LINES = 1250
ROOTS = ("common", "controller", "site-agent")
# Checked for size (rule 4) only.
SIZE_ONLY_ROOTS = ("tests/unit", "tests/tools", "tests/fuzz")
IO_HEADERS = {"uv.h", "libpq-fe.h", "link.h", "tls.h", "httpd.h", "watchdog.h",
              "systemd/sd-daemon.h"}
INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]', re.M)


def scan(top, roots):
    """relative path -> (list of (kind, name) included, number of lines)"""
    files = {}
    for root in roots:
        for d, _, names in os.walk(os.path.join(top, root)):
            for n in names:
                if n.endswith((".c", ".h")):
                    p = os.path.join(d, n)
                    with open(p, encoding="utf-8") as f:
                        text = f.read()
                    rel = os.path.relpath(p, top)
                    files[rel] = (INCLUDE.findall(text), text.count("\n"))
    return files


def main(top):
    files = scan(top, ROOTS)
    test_files = scan(top, SIZE_ONLY_ROOTS)
    by_name = {}
    for rel in files:
        by_name.setdefault(os.path.basename(rel), []).append(rel)
    problems = []

    def resolve(name):
        hits = by_name.get(os.path.basename(name), [])
        return hits[0] if len(hits) == 1 else None

    def module(rel):
        stem = os.path.splitext(os.path.basename(rel))[0]
        base = stem[:-4] if stem.endswith("-int") else stem
        incs = [n for k, n in files[rel][0] if k == '"']
        if rel.endswith(".c") and incs:
            first = os.path.splitext(os.path.basename(incs[0]))[0]
            first = first[:-4] if first.endswith("-int") else first
            if stem.startswith(first + "_"):
                return os.path.join(os.path.dirname(rel), first)
        return os.path.join(os.path.dirname(rel), base)

    # 1. module graph and its cycles
    edges = {}
    for rel, (incs, _) in files.items():
        a = module(rel)
        for kind, name in incs:
            target = resolve(name) if kind == '"' else None
            if target:
                b = module(target)
                if a != b:
                    edges.setdefault(a, set()).add(b)
    index, low, stack, on, sccs = {}, {}, [], set(), []
    sys.setrecursionlimit(10000)

    def strong(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(sorted(comp))
    for v in sorted(set(edges) | {m for s in edges.values() for m in s}):
        if v not in index:
            strong(v)
    for comp in sccs:
        problems.append("include cycle between modules: " + " <-> ".join(comp))

    # 2. the routing core includes no I/O, directly or transitively
    def closure(rel):
        seen, todo, system = set(), [rel], set()
        while todo:
            f = todo.pop()
            if f in seen:
                continue
            seen.add(f)
            for kind, name in files[f][0]:
                if kind == "<":
                    system.add(name)
                    continue
                t = resolve(name)
                if t:
                    todo.append(t)
                else:
                    system.add(name)  # generated or external, by name
        return seen, system
    for rel in sorted(files):
        if not rel.startswith("controller/routing/"):
            continue
        seen, system = closure(rel)
        bad = sorted((IO_HEADERS & ({os.path.basename(s) for s in seen} | system)) |
                     {s for s in seen if s.startswith(("controller/net/", "controller/store/",
                                                        "controller/web/", "controller/notify/"))} |
                     {s for s in system if s.startswith(("openssl/", "curl/"))})
        if bad:
            problems.append(f"{rel}: the routing core reaches I/O: {', '.join(bad)}")

    # 3. common/ stands alone
    for rel, (incs, _) in sorted(files.items()):
        if not rel.startswith("common/"):
            continue
        for kind, name in incs:
            t = resolve(name) if kind == '"' else None
            if t and not t.startswith("common/"):
                problems.append(f"{rel}: common/ includes {t}")

    # 4. size, of the tests' files too
    for rel, (_, lines) in sorted({**files, **test_files}.items()):
        if lines > MAX_LINES:
            problems.append(f"{rel}: {lines} lines (at most {MAX_LINES}): split it")

    for p in problems:
        print(p)
    print(f"checked {len(files)} files and the size of {len(test_files)} test files, "
          f"{len(edges)} modules with includes: "
          f"{'OK' if not problems else str(len(problems)) + ' problem(s)'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "."))
