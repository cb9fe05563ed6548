"""INCRBYFLOAT's arithmetic: C's `long double` (x87 80-bit extended precision), exactly.

Redis parses with strtold, adds in long double and prints with "%.17Lf". A
Python float (a C double) rounds differently -- 10.5 + 0.1 prints as
10.59999999999999964 in double but 10.6 in long double -- so the values are
kept as exact fractions and rounded as the x87 format rounds: a 64-bit
significand, round half to even, exponents down to 2**-16445 (subnormals),
infinity from 2**16384 up.
"""

from __future__ import annotations

import re
from decimal import Decimal
from fractions import Fraction

_SIGNIFICAND_BITS = 64
_SMALLEST_EXPONENT = -16445  # the subnormal ulp
_OVERFLOW = 1 << 16384
_MAX_CHARS = 5 * 1024  # Redis's MAX_LONG_DOUBLE_CHARS
# Beyond these decimal exponents every non-zero value over- or underflows; checked first so a
# request like 1e999999999 costs nothing.
_MAX_DECIMAL_EXPONENT, _MIN_DECIMAL_EXPONENT = 4940, -4970

_DECIMAL = re.compile(rb"([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?\Z")
_HEX = re.compile(rb"([+-]?)0[xX]([0-9a-fA-F]*)(?:\.([0-9a-fA-F]*))?(?:[pP]([+-]?\d+))?\Z")
_INFINITY = re.compile(rb"([+-]?)(?:inf|infinity)\Z", re.IGNORECASE)

INF = float("inf")


def round_extended(value: Fraction) -> Fraction | float:
    """`value` rounded to the nearest long double; +-inf if it overflows."""
    if not value:
        return value
    magnitude = abs(value)
    n, d = magnitude.numerator, magnitude.denominator
    exponent = n.bit_length() - d.bit_length() - _SIGNIFICAND_BITS  # ulp: 2**exponent
    if magnitude >= Fraction(1 << _SIGNIFICAND_BITS) * _power_of_two(exponent):
        exponent += 1
    exponent = max(exponent, _SMALLEST_EXPONENT)
    unit = _power_of_two(exponent)
    rounded = round(magnitude / unit) * unit  # Fraction's round() is half to even
    if rounded >= _OVERFLOW:
        return INF if value > 0 else -INF
    return rounded if value > 0 else -rounded


def parse(text: bytes) -> Fraction | float | None:
    """Redis's string2ld: the long double `text` spells, or None if it is not one
    (empty, spaces, trailing characters, NaN, or a value that over- or underflows)."""
    if not text or len(text) >= _MAX_CHARS:
        return None
    found = _HEX.match(text)
    if found:
        sign, whole, fraction, exponent = found.groups()
        fraction = fraction or b""
        if not whole and not fraction:
            return None
        mantissa = int(whole + fraction, 16)
        exponent = int(exponent or 0) - 4 * len(fraction)
        if mantissa and not -20000 < exponent + mantissa.bit_length() < 20000:
            return None
        exact = mantissa * _power_of_two(exponent)
    else:
        found = _DECIMAL.match(text)
        if found is None:
            found = _INFINITY.match(text)
            return None if found is None else (-INF if found.group(1) == b"-" else INF)
        sign, whole, fraction, exponent = found.groups()
        fraction = fraction or b""
        if not whole and not fraction:
            return None
        digits = (whole + fraction).lstrip(b"0")
        exponent = int(exponent or 0) - len(fraction)
        if digits and not _MIN_DECIMAL_EXPONENT < exponent + len(digits) < _MAX_DECIMAL_EXPONENT:
            return None
        # Decimal converts more digits than int() allows (Python caps int <-> str at 4300)
        exact = Fraction(int(Decimal(digits.decode() or "0"))) * Fraction(10) ** exponent
    if not exact:
        return exact
    value = round_extended(exact)
    if value in (INF, -INF) or not value:
        return None  # ERANGE: overflow, or a non-zero value that underflowed to zero
    return -value if sign == b"-" else value


def format_human(value: Fraction) -> bytes:
    """C's "%.17Lf" with the trailing zeros (and a bare point) removed: Redis's
    LD_STR_HUMAN, the text INCRBYFLOAT stores and returns."""
    scaled = round(abs(value) * 10**17)  # glibc rounds the exact value, half to even
    whole, fraction = divmod(scaled, 10**17)
    text = f"{Decimal(whole)}.{fraction:017d}".encode().rstrip(b"0").rstrip(b".")
    if value < 0 and text != b"0":
        return b"-" + text
    return text


def _power_of_two(exponent: int) -> Fraction:
    return Fraction(1 << exponent) if exponent >= 0 else Fraction(1, 1 << -exponent)
