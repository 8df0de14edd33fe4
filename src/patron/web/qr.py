"""A small QR code encoder (ISO/IEC 18004) for the member card, drawn as inline SVG.

Why here: the member page shows the card number as a QR code that the till's scanner
reads, and pages load nothing from the network, so the code is drawn on the server. No
QR package is among patron's dependencies, and the member card needs little: byte mode,
error correction level M, versions 1 to 10 (up to 213 bytes; a card number is 13).

Design overview
---------------
1. Data bits: mode indicator 0100 (bytes), the length (8 bits; 16 from version 10), the
   bytes, a terminator of up to four zero bits, zero bits to the byte boundary, then the
   pad bytes 0xEC 0x11 alternately up to the version's data capacity.
2. Error correction: the data codewords are split into blocks (the standard's table for
   level M), each block gets Reed-Solomon codewords over GF(256) with the primitive
   polynomial x^8 + x^4 + x^3 + x^2 + 1 (0x11D), and the blocks are interleaved column by
   column, data first, then error correction.
3. The matrix: finder patterns with separators, timing patterns, alignment patterns, the
   dark module, reserved format (and, from version 7, version) areas; the codeword bits
   go in two-module columns zig-zagging up and down from the bottom right corner.
4. Of the eight masks the one with the lowest penalty (the standard's four rules) is
   kept, and the 15-bit format information (BCH(15,5), XOR 0x5412) written for it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

# (error correction codewords per block, [(blocks, data codewords per block), ...])
# for level M, versions 1..10 (ISO/IEC 18004 table 9).
_BLOCKS_M: dict[int, tuple[int, tuple[tuple[int, int], ...]]] = {
    1: (10, ((1, 16),)), 2: (16, ((1, 28),)), 3: (26, ((1, 44),)), 4: (18, ((2, 32),)),
    5: (24, ((2, 43),)), 6: (16, ((4, 27),)), 7: (18, ((4, 31),)),
    8: (22, ((2, 38), (2, 39))), 9: (22, ((3, 36), (2, 37))), 10: (26, ((4, 43), (1, 44))),
}
_ALIGNMENT: dict[int, tuple[int, ...]] = {
    1: (), 2: (6, 18), 3: (6, 22), 4: (6, 26), 5: (6, 30), 6: (6, 34),
    7: (6, 22, 38), 8: (6, 24, 42), 9: (6, 26, 46), 10: (6, 28, 50),
}
_REMAINDER_BITS = {1: 0, 2: 7, 3: 7, 4: 7, 5: 7, 6: 7, 7: 0, 8: 0, 9: 0, 10: 0}
_LEVEL_M_BITS = 0b00  # the format field's two bits for level M (L=01, M=00, Q=11, H=10)
MAX_VERSION = 10


class QrTooLong(ValueError):
    """The text does not fit a version 10 code at level M."""


# ---------------------------------------------------------------- Reed-Solomon over GF(256)


@functools.cache
def _gf_tables() -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Exponent and logarithm tables of GF(256) with the primitive polynomial 0x11D."""
    exp = [0] * 512
    log = [0] * 256
    x = 1
    for i in range(255):
        exp[i] = x
        log[x] = i
        x <<= 1
        if x & 0x100:
            x ^= 0x11D
    for i in range(255, 512):
        exp[i] = exp[i - 255]
    return tuple(exp), tuple(log)


def _gf_mul(a: int, b: int) -> int:
    if a == 0 or b == 0:
        return 0
    exp, log = _gf_tables()
    return exp[log[a] + log[b]]


@functools.cache
def _generator(degree: int) -> tuple[int, ...]:
    """Coefficients (highest power first, leading 1 left out) of prod (x - a^i), i < degree."""
    exp, _log = _gf_tables()
    poly = [1]
    for i in range(degree):
        nxt = [0] * (len(poly) + 1)
        for j, coef in enumerate(poly):
            nxt[j] ^= coef
            nxt[j + 1] ^= _gf_mul(coef, exp[i])
        poly = nxt
    return tuple(poly[1:])


def rs_remainder(data: bytes | list[int], degree: int) -> list[int]:
    """The ``degree`` Reed-Solomon error correction codewords of ``data``."""
    gen = _generator(degree)
    rem = [0] * degree
    for byte in data:
        factor = byte ^ rem[0]
        rem = [*rem[1:], 0]
        for i, coef in enumerate(gen):
            rem[i] ^= _gf_mul(coef, factor)
    return rem


# ---------------------------------------------------------------- data codewords


def _data_capacity(version: int) -> int:
    _ec, groups = _BLOCKS_M[version]
    return sum(blocks * size for blocks, size in groups)


def _count_bits(version: int) -> int:
    return 8 if version < 10 else 16


def choose_version(length: int) -> int:
    """The smallest version whose level-M capacity holds ``length`` bytes."""
    for version in range(1, MAX_VERSION + 1):
        needed_bits = 4 + _count_bits(version) + 8 * length
        if needed_bits <= 8 * _data_capacity(version):
            return version
    raise QrTooLong(f"{length} bytes do not fit a version {MAX_VERSION} QR code")


def data_codewords(payload: bytes, version: int) -> list[int]:
    """Mode, length, bytes, terminator and padding, as the version's data codewords."""
    capacity = _data_capacity(version)
    bits: list[int] = []

    def put(value: int, width: int) -> None:
        bits.extend((value >> i) & 1 for i in range(width - 1, -1, -1))

    put(0b0100, 4)
    put(len(payload), _count_bits(version))
    for byte in payload:
        put(byte, 8)
    bits.extend([0] * min(4, capacity * 8 - len(bits)))
    bits.extend([0] * (-len(bits) % 8))
    words = [int("".join(map(str, bits[i:i + 8])), 2) for i in range(0, len(bits), 8)]
    pad = (0xEC, 0x11)
    words.extend(pad[i % 2] for i in range(capacity - len(words)))
    return words


def codewords(payload: bytes, version: int) -> list[int]:
    """Data and error correction codewords, split into blocks and interleaved."""
    ec_len, groups = _BLOCKS_M[version]
    data = data_codewords(payload, version)
    blocks: list[list[int]] = []
    start = 0
    for count, size in groups:
        for _ in range(count):
            blocks.append(data[start:start + size])
            start += size
    ecs = [rs_remainder(block, ec_len) for block in blocks]
    out = [block[i] for i in range(max(len(b) for b in blocks)) for block in blocks
           if i < len(block)]
    out.extend(ec[i] for i in range(ec_len) for ec in ecs)
    return out


# ---------------------------------------------------------------- the matrix


def format_bits(mask: int) -> int:
    """The 15 format bits for level M and ``mask``: BCH(15,5) code, XOR 0x5412."""
    data = _LEVEL_M_BITS << 3 | mask
    rem = data
    for _ in range(10):
        rem = (rem << 1) ^ ((rem >> 9) * 0x537)
    return (data << 10 | rem) ^ 0x5412


def version_bits(version: int) -> int:
    """The 18 version bits (versions 7 and up): BCH(18,6) with generator 0x1F25."""
    rem = version
    for _ in range(12):
        rem = (rem << 1) ^ ((rem >> 11) * 0x1F25)
    return version << 12 | rem


def mask_bit(mask: int, r: int, c: int) -> bool:
    """Whether mask ``mask`` flips the module at row ``r``, column ``c``."""
    if mask == 0:
        return (r + c) % 2 == 0
    if mask == 1:
        return r % 2 == 0
    if mask == 2:
        return c % 3 == 0
    if mask == 3:
        return (r + c) % 3 == 0
    if mask == 4:
        return (r // 2 + c // 3) % 2 == 0
    if mask == 5:
        return (r * c) % 2 + (r * c) % 3 == 0
    if mask == 6:
        return ((r * c) % 2 + (r * c) % 3) % 2 == 0
    return ((r + c) % 2 + (r * c) % 3) % 2 == 0


class _Grid:
    """Modules (True = dark) and which of them belong to function patterns."""

    def __init__(self, version: int) -> None:
        self.version = version
        self.size = 17 + 4 * version
        self.dark = [[False] * self.size for _ in range(self.size)]
        self.function = [[False] * self.size for _ in range(self.size)]

    def fix(self, row: int, col: int, dark: bool) -> None:
        self.dark[row][col] = dark
        self.function[row][col] = True

    def draw_function_patterns(self) -> None:
        size = self.size
        for i in range(size):  # timing patterns
            self.fix(6, i, i % 2 == 0)
            self.fix(i, 6, i % 2 == 0)
        for row, col in ((3, 3), (3, size - 4), (size - 4, 3)):  # finders with separators
            for dr in range(-4, 5):
                for dc in range(-4, 5):
                    r, c = row + dr, col + dc
                    if 0 <= r < size and 0 <= c < size:
                        ring = max(abs(dr), abs(dc))
                        self.fix(r, c, ring not in (2, 4))
        centres = _ALIGNMENT[self.version]
        last = len(centres) - 1
        for i, row in enumerate(centres):
            for j, col in enumerate(centres):
                if (i, j) in ((0, 0), (0, last), (last, 0)):
                    continue  # those corners hold the finder patterns
                for dr in range(-2, 3):
                    for dc in range(-2, 3):
                        self.fix(row + dr, col + dc, max(abs(dr), abs(dc)) != 1)
        self.draw_format(0)  # reserve the areas; the real bits come with the mask
        if self.version >= 7:
            bits = version_bits(self.version)
            for i in range(18):
                bit = (bits >> i) & 1 == 1
                a, b = size - 11 + i % 3, i // 3
                self.fix(b, a, bit)
                self.fix(a, b, bit)

    def draw_format(self, mask: int) -> None:
        bits = format_bits(mask)
        size = self.size

        def bit(i: int) -> bool:
            return (bits >> i) & 1 == 1

        for i in range(6):
            self.fix(i, 8, bit(i))
        self.fix(7, 8, bit(6))
        self.fix(8, 8, bit(7))
        self.fix(8, 7, bit(8))
        for i in range(9, 15):
            self.fix(8, 14 - i, bit(i))
        for i in range(8):
            self.fix(8, size - 1 - i, bit(i))
        for i in range(8, 15):
            self.fix(size - 15 + i, 8, bit(i))
        self.fix(size - 8, 8, True)  # the dark module

    def place(self, words: list[int]) -> None:
        """Codeword bits in the zig-zag order, skipping function modules."""
        size = self.size
        total = len(words) * 8
        i = 0
        right = size - 1
        while right >= 1:
            if right == 6:
                right = 5  # the vertical timing pattern is jumped over
            upward = ((right + 1) & 2) == 0
            for vert in range(size):
                row = size - 1 - vert if upward else vert
                for col in (right, right - 1):
                    if not self.function[row][col] and i < total:
                        self.dark[row][col] = (words[i >> 3] >> (7 - (i & 7))) & 1 == 1
                        i += 1
            right -= 2

    def apply_mask(self, mask: int) -> None:
        for r in range(self.size):
            for c in range(self.size):
                if not self.function[r][c] and mask_bit(mask, r, c):
                    self.dark[r][c] = not self.dark[r][c]


_FINDER_LIKE = ((True, False, True, True, True, False, True, False, False, False, False),
                (False, False, False, False, True, False, True, True, True, False, True))


def penalty(dark: list[list[bool]]) -> int:
    """The standard's four penalty rules: runs, 2x2 blocks, finder look-alikes, balance."""
    size = len(dark)
    score = 0
    lines = [list(row) for row in dark] + [[dark[r][c] for r in range(size)]
                                            for c in range(size)]
    for line in lines:
        run = 1
        for i in range(1, size + 1):
            if i < size and line[i] == line[i - 1]:
                run += 1
                continue
            if run >= 5:
                score += 3 + (run - 5)
            run = 1
        for i in range(size - 10):
            if tuple(line[i:i + 11]) in _FINDER_LIKE:
                score += 40
    for r in range(size - 1):
        for c in range(size - 1):
            if dark[r][c] == dark[r][c + 1] == dark[r + 1][c] == dark[r + 1][c + 1]:
                score += 3
    total = size * size
    darks = sum(sum(row) for row in dark)
    score += ((abs(darks * 20 - total * 10) + total - 1) // total - 1) * 10
    return score


@dataclass(frozen=True)
class QrCode:
    version: int
    mask: int
    modules: tuple[tuple[bool, ...], ...]  # rows of modules, True = dark

    @property
    def size(self) -> int:
        return len(self.modules)


def encode(text: str, *, mask: int | None = None) -> QrCode:
    """``text`` (UTF-8) as a level-M QR code; the best mask unless one is given."""
    payload = text.encode("utf-8")
    version = choose_version(len(payload))
    words = codewords(payload, version)
    best: tuple[int, int, list[list[bool]]] | None = None
    for candidate in range(8) if mask is None else (mask,):
        grid = _Grid(version)
        grid.draw_function_patterns()
        grid.place(words)
        grid.apply_mask(candidate)
        grid.draw_format(candidate)
        score = penalty(grid.dark)
        if best is None or score < best[0]:
            best = (score, candidate, grid.dark)
    assert best is not None
    _score, chosen, dark = best
    return QrCode(version, chosen, tuple(tuple(row) for row in dark))


def svg(code: QrCode, *, module_px: int = 6, quiet: int = 4, title: str = "") -> str:
    """The code as a standalone SVG element: one path of dark modules, crisp at any size.

    ``title`` is the accessible name (the card number, for screen readers).
    """
    side = code.size + 2 * quiet
    parts = []
    for r, row in enumerate(code.modules):
        c = 0
        while c < code.size:
            if row[c]:
                start = c
                while c < code.size and row[c]:
                    c += 1
                parts.append(f"M{start + quiet} {r + quiet}h{c - start}v1h-{c - start}z")
            else:
                c += 1
    label = (f'<title>{_escape(title)}</title>') if title else ""
    px = side * module_px
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="qr" role="img" '
            f'viewBox="0 0 {side} {side}" width="{px}" height="{px}" '
            f'shape-rendering="crispEdges">{label}'
            f'<rect width="{side}" height="{side}" fill="#fff"/>'
            f'<path fill="#000" d="{"".join(parts)}"/></svg>')


def _escape(text: str) -> str:
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))
