#!/usr/bin/env python3
"""Writes host/core/testdata/python_float_repr.txt: doubles (as hex bits) and
CPython's repr of each, the reference for Waymark's canonical float text
(host/core/src/float_text.rs). Deterministic: the same Python writes the same
table."""
import random
import struct
import sys


def doubles():
    rng = random.Random(20261207)
    # Uniform bit patterns: every exponent, subnormals included.
    for _ in range(1500):
        yield struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0]
    # Around the fixed / exponent switch points (1e-4 and 1e16).
    for _ in range(1500):
        yield rng.uniform(1, 10) * 10.0 ** rng.randint(-12, 20) * rng.choice([1, -1])
    # Short decimals, as people type them.
    for _ in range(1000):
        yield float(f"{rng.randint(1, 99999)}e{rng.randint(-8, 18)}")
    for e in range(-330, 310):
        yield float(f"1e{e}")
        yield float(f"1.5e{e}")
    yield from [0.0, -0.0, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308,
                0.1, 0.2, 0.30000000000000004, 1 / 3, 2.0**53, 2.0**53 + 2, 2.0**63, 2.0**64]


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "host/core/testdata/python_float_repr.txt"
    with open(out, "w") as f:
        f.write("# bits (hex) of a double, then repr(float) as CPython %s prints it.\n"
                % sys.version.split()[0])
        f.write("# Written by scripts/python_float_table.py.\n")
        for x in doubles():
            if x != x or x in (float("inf"), float("-inf")):
                continue
            bits = struct.unpack("<Q", struct.pack("<d", x))[0]
            f.write("%016x %s\n" % (bits, repr(x)))


if __name__ == "__main__":
    main()
