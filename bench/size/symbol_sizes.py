#!/usr/bin/env python3
"""Where the bytes of a binary go: the sizes of its symbols (`nm -S`, demangled), summed by
the crate that defines them. Generic code is counted under the crate that defines it, even
when another crate instantiated it.

    python3 bench/size/symbol_sizes.py target/release/forexgpt   # an unstripped build
"""
import re, subprocess, sys, collections
path = sys.argv[1]
out = subprocess.run(["nm", "-S", "--size-sort", "-C", path], capture_output=True, text=True).stdout
by_crate = collections.Counter()
total = 0
for line in out.splitlines():
    parts = line.split(" ", 3)
    if len(parts) < 4: continue
    size = int(parts[1], 16); kind = parts[2]; name = parts[3]
    if kind.lower() not in ("t", "r", "d", "b"): continue
    total += size
    # crate = first path segment of the demangled name, skipping generic prefixes like "<"
    n = name.lstrip("<&*( ")
    m = re.match(r"([A-Za-z_][A-Za-z0-9_]*)::", n)
    crate = m.group(1) if m else ("[C/other] " + kind)
    by_crate[crate] += size
print(f"symbols total {total/2**20:.1f} MiB")
for crate, size in by_crate.most_common(40):
    print(f"{size/2**20:8.2f} MiB  {crate}")
