"""One check for the numeric options of the typed configs: a value of the wrong kind, not finite or out of its
range is a ValueError naming the key, the value and what is wanted, the one line the entry points print."""

import math
import numbers
from typing import Any

INT_MAX = 2**31 - 1  # whole numbers end in OpenCV, torch or NumPy as C ints: 2^70 is an OverflowError there
SEED_MAX = INT_MAX  # OpenCV's RNG takes a C int; PoseLib and NumPy take any seed in [0, SEED_MAX]


def check_number(key: str, value: Any, minimum: float = -math.inf, maximum: float = math.inf, *,
                 integer: bool = False, above: bool = False, optional: bool = False) -> None:
    """ValueError `key=value: must be ...` unless `value` is a finite number (a whole one with `integer`) in
    [minimum, maximum] (`above`: strictly greater than `minimum`); None passes with `optional`. A bool is not
    a number (YAML's `true` would otherwise be 1). Whole numbers stay within INT_MAX unless `maximum` says."""
    if value is None and optional:
        return
    if integer and maximum == math.inf:
        maximum = INT_MAX
    kind = "a whole number" if integer else "a finite number"
    low, high = _shown(minimum), _shown(maximum)
    if math.isfinite(minimum) and math.isfinite(maximum):
        wanted = f"{kind} in {'(' if above else '['}{low}, {high}]"
    elif math.isfinite(minimum):
        wanted = f"{kind} {'>' if above else '>='} {low}"
    elif math.isfinite(maximum):
        wanted = f"{kind} <= {high}"
    else:
        wanted = kind
    number = isinstance(value, numbers.Integral if integer else numbers.Real) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or value < minimum or value > maximum or (above and value == minimum):
        raise ValueError(f"{key}={value!r}: must be {wanted}{' (or null)' if optional else ''}")


def _shown(bound: float) -> str:
    return str(int(bound)) if math.isfinite(bound) and bound == int(bound) else f"{bound:g}"


def check_seed(key: str, value: Any) -> None:
    """`check_number` for a random seed: a whole number in [0, SEED_MAX], what every seeded library here takes."""
    check_number(key, value, 0, SEED_MAX, integer=True)
