"""Hostile JPEG files for tests and benchmarks/imageio_bombs.py, written byte by byte (no binary
file in the repository): a progressive JPEG whose header claims a huge frame but whose scans hold
almost nothing (libjpeg allocates the whole frame's DCT coefficients, 128 bytes a block, before
it reads a bit: issue 37's 7,414-byte 13000x13000 file took a verify to 1.13 GB), and one whose
AC scans repeat many times (each scan walks every block of the frame: 800 scans cost 46.5 s).

The files are valid enough for libjpeg: one quantisation table, a DC Huffman table with the single
symbol "category 0" (1 bit a block) and an AC table with the single symbol EOB14 (a run of up to
32,767 empty blocks in 15 bits), an interleaved DC scan and one AC scan per component, repeated."""
from __future__ import annotations

import struct


class _Bits:
    def __init__(self):
        self.out, self.acc, self.n = bytearray(), 0, 0

    def put(self, value: int, nbits: int):
        for i in range(nbits - 1, -1, -1):
            self.acc = (self.acc << 1) | ((value >> i) & 1)
            self.n += 1
            if self.n == 8:
                self.out.append(self.acc)
                if self.acc == 0xFF:
                    self.out.append(0)  # byte stuffing
                self.acc, self.n = 0, 0

    def zeros(self, nbits: int):
        """nbits zero bits, fast (the DC scan of a big frame)."""
        while self.n and nbits:
            self.put(0, 1)
            nbits -= 1
        self.out += bytes(nbits // 8)
        self.put(0, nbits % 8)

    def flush(self) -> bytes:
        if self.n:
            self.put((1 << (8 - self.n)) - 1, 8 - self.n)  # pad with ones
        return bytes(self.out)


def _seg(marker: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload


def progressive_jpeg(width: int, height: int, ac_scans: int = 1, dc_bytes: int | None = None, grey: bool = False,
                     refine: bool = False) -> bytes:
    """A progressive (SOF2) JPEG of a flat grey frame width x height (4:2:0 colour, or grey).
    ac_scans: how many times the AC scans (one per component) are repeated. dc_bytes: cut the DC
    scan's data to this many bytes (a truncated file: libjpeg reads the rest as zeros), default
    the full 1 bit a block. refine: the repeated AC scans are successive-approximation refinements
    (Ah=1, Al=0), which libjpeg walks coefficient by coefficient even through an end-of-band run
    (~20x the cost of a first scan)."""
    comps = [(1, 1, 1)] if grey else [(1, 2, 2), (2, 1, 1), (3, 1, 1)]  # (id, H, V)
    hmax, vmax = max(c[1] for c in comps), max(c[2] for c in comps)
    mcux, mcuy = -(-width // (8 * hmax)), -(-height // (8 * vmax))
    out = bytearray(b"\xff\xd8")
    out += _seg(0xDB, b"\x00" + bytes([1]) * 64)
    out += _seg(0xC2, struct.pack(">BHHB", 8, height, width, len(comps)) + b"".join(bytes([i, (h << 4) | v, 0]) for i, h, v in comps))
    counts = bytes([1] + [0] * 15)
    out += _seg(0xC4, b"\x00" + counts + b"\x00")  # DC table 0: symbol 0 (category 0) = code "0"
    out += _seg(0xC4, b"\x10" + counts + b"\xe0")  # AC table 0: symbol 0xE0 (EOB14) = code "0"
    # interleaved DC scan: every MCU holds H x V blocks of each component, 1 bit each
    out += _seg(0xDA, bytes([len(comps)]) + b"".join(bytes([i, 0x00]) for i, _, _ in comps) + b"\x00\x00\x00")
    bits = _Bits()
    bits.zeros(mcux * mcuy * sum(h * v for _, h, v in comps))
    dc = bits.flush()
    out += dc if dc_bytes is None else dc[:dc_bytes]
    for k in range(ac_scans):
        approx = (0x01 if k == 0 else 0x10) if refine else 0x00  # Ah << 4 | Al
        for i, h, v in comps:
            # a non-interleaved scan covers the component's own blocks (no MCU padding)
            blocks = -(-(-(-width * h // hmax)) // 8) * -(-(-(-height * v // vmax)) // 8)
            out += _seg(0xDA, bytes([1, i, 0x00, 1, 63, approx]))
            bits = _Bits()
            for _ in range(-(-blocks // 32767)):
                bits.put(0, 1)  # EOB14
                bits.put(0x3FFF, 14)  # run 2^14 + 16383 = 32,767 blocks
            out += bits.flush()
    return bytes(out + b"\xff\xd9")


def baseline_jpeg(width: int, height: int, data_bytes: int | None = None) -> bytes:
    """A baseline (SOF0) 4:2:0 JPEG of a flat grey frame: 2 bits a block (DC category 0, EOB).
    data_bytes: cut the scan's data to this many bytes (libjpeg decodes the rest as zeros, which
    these tables read as flat blocks: a huge frame from a few bytes)."""
    comps = [(1, 2, 2), (2, 1, 1), (3, 1, 1)]
    mcux, mcuy = -(-width // 16), -(-height // 16)
    out = bytearray(b"\xff\xd8")
    out += _seg(0xDB, b"\x00" + bytes([1]) * 64)
    out += _seg(0xC0, struct.pack(">BHHB", 8, height, width, 3) + b"".join(bytes([i, (h << 4) | v, 0]) for i, h, v in comps))
    counts = bytes([1] + [0] * 15)
    out += _seg(0xC4, b"\x00" + counts + b"\x00")  # DC: category 0 = "0"
    out += _seg(0xC4, b"\x10" + counts + b"\x00")  # AC: EOB = "0"
    out += _seg(0xDA, b"\x03" + b"".join(bytes([i, 0x00]) for i, _, _ in comps) + b"\x00\x3f\x00")
    bits = _Bits()
    bits.zeros(mcux * mcuy * 6 * 2)
    data = bits.flush()
    out += data if data_bytes is None else data[:data_bytes]
    return bytes(out + b"\xff\xd9")
