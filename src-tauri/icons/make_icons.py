#!/usr/bin/env python3
"""Draws the app icon (three candles and a rising forecast line on a dark rounded square)
and writes the PNG, ICO and ICNS files tauri.conf.json names. Pure standard library; run it
from this folder after changing the drawing."""
import struct
import zlib


def draw(n):
    px = [[(0, 0, 0, 0)] * n for _ in range(n)]
    r = n * 0.18  # corner radius

    def inside_rounded(x, y):
        cx = min(max(x, r), n - 1 - r)
        cy = min(max(y, r), n - 1 - r)
        return (x - cx) ** 2 + (y - cy) ** 2 <= r * r

    for y in range(n):
        for x in range(n):
            if inside_rounded(x + 0.5, y + 0.5):
                t = y / n
                px[y][x] = (int(18 + 10 * t), int(28 + 14 * t), int(52 + 20 * t), 255)

    def rect(x0, y0, x1, y1, c):
        for y in range(int(y0 * n), int(y1 * n)):
            for x in range(int(x0 * n), int(x1 * n)):
                px[y][x] = c

    green, red, gold = (46, 204, 113, 255), (231, 76, 60, 255), (241, 196, 15, 255)
    # (centre x, wick top, body top, body bottom, wick bottom, colour)
    for cx, wt, bt, bb, wb, c in [
        (0.25, 0.42, 0.50, 0.70, 0.78, red),
        (0.45, 0.30, 0.36, 0.60, 0.68, green),
        (0.65, 0.22, 0.28, 0.46, 0.55, green),
    ]:
        rect(cx - 0.012, wt, cx + 0.012, wb, c)
        rect(cx - 0.055, bt, cx + 0.055, bb, c)
    # forecast line from the last candle up and to the right
    steps = 4 * n
    for i in range(steps):
        t = i / steps
        x, y = 0.70 + 0.18 * t, 0.37 - 0.17 * t
        w = max(1, int(0.018 * n))
        for dy in range(-w, w + 1):
            for dx in range(-w, w + 1):
                xx, yy = int(x * n) + dx, int(y * n) + dy
                if 0 <= xx < n and 0 <= yy < n:
                    px[yy][xx] = gold
    return px


def png(n):
    raw = b"".join(b"\x00" + b"".join(bytes(p) for p in row) for row in draw(n))

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", n, n, 8, 6, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def ico(images):
    head = struct.pack("<HHH", 0, 1, len(images))
    offset = 6 + 16 * len(images)
    entries, blobs = b"", b""
    for n, data in images:
        entries += struct.pack("<BBBBHHII", n % 256, n % 256, 0, 0, 1, 32, len(data), offset)
        offset += len(data)
        blobs += data
    return head + entries + blobs


def icns(images):
    body = b"".join(kind + struct.pack(">I", len(data) + 8) + data for kind, data in images)
    return b"icns" + struct.pack(">I", len(body) + 8) + body


if __name__ == "__main__":
    sizes = {n: png(n) for n in (32, 128, 256, 512)}
    for name, n in [("32x32.png", 32), ("128x128.png", 128), ("128x128@2x.png", 256),
                    ("icon.png", 512)]:
        open(name, "wb").write(sizes[n])
    open("icon.ico", "wb").write(ico([(32, sizes[32]), (256, sizes[256])]))
    open("icon.icns", "wb").write(icns([(b"ic07", sizes[128]), (b"ic08", sizes[256]),
                                        (b"ic09", sizes[512])]))
