#!/usr/bin/env python3
"""Whether two GGUF files hold the same tensors: same names, types, shapes and data bytes
(metadata may differ). Prints one line; exit 0 when equal, 1 when not.
   bench/gguf_tensors_equal.py A.gguf B.gguf"""
import mmap
import struct
import sys

SCALAR = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}  # GGUF value types


def read(path):
    f = open(path, "rb")
    m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    magic, version, n_tensors, n_kv = struct.unpack_from("<4sIQQ", m, 0)
    assert magic == b"GGUF", f"{path}: not a GGUF file"
    pos = 24
    align = 32

    def string(p):
        (n,) = struct.unpack_from("<Q", m, p)
        return m[p + 8:p + 8 + n].decode(), p + 8 + n

    def skip_value(t, p):
        if t == 8:
            return string(p)[1]
        if t == 9:
            et, n = struct.unpack_from("<IQ", m, p)
            p += 12
            for _ in range(n):
                p = skip_value(et, p)
            return p
        return p + SCALAR[t]

    for _ in range(n_kv):
        key, pos = string(pos)
        (t,) = struct.unpack_from("<I", m, pos)
        if key == "general.alignment":
            (align,) = struct.unpack_from("<I", m, pos + 4)
        pos = skip_value(t, pos + 4)
    infos = []
    for _ in range(n_tensors):
        name, pos = string(pos)
        (nd,) = struct.unpack_from("<I", m, pos)
        dims = struct.unpack_from(f"<{nd}Q", m, pos + 4)
        typ, off = struct.unpack_from("<IQ", m, pos + 4 + 8 * nd)
        pos += 4 + 8 * nd + 12
        infos.append((name, typ, dims, off))
    data = (pos + align - 1) // align * align
    ends = sorted(o for *_, o in infos) + [len(m) - data]
    out = {}
    for name, typ, dims, off in infos:
        end = min(e for e in ends if e > off) if any(e > off for e in ends) else len(m) - data
        out[name] = (typ, dims, m[data + off:data + end])
    return out


a, b = read(sys.argv[1]), read(sys.argv[2])
if a.keys() != b.keys():
    print(f"different tensor names: {sorted(a.keys() ^ b.keys())[:5]}")
    sys.exit(1)
for name in a:
    ta, tb = a[name], b[name]
    if ta[0] != tb[0] or ta[1] != tb[1]:
        print(f"{name}: type/shape {ta[:2]} vs {tb[:2]}")
        sys.exit(1)
    # the padding after a tensor may differ; compare the shorter span
    n = min(len(ta[2]), len(tb[2]))
    if ta[2][:n] != tb[2][:n]:
        print(f"{name}: data differs")
        sys.exit(1)
print(f"{len(a)} tensors equal (names, types, shapes, data)")
