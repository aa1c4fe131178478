"""Shared pieces of the fuzz tests: JSON-like values, settings, and the one contract.

The contract every fuzzed reader keeps: any input ends in a result or a ``SegkitError``
(one line), never another exception and never a hang (the deadline catches slow ones).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from segkit.errors import SegkitError

T = TypeVar("T")

#: Few examples, each bounded: the whole fuzz set stays in seconds; an example slower
#: than the deadline (generous: the CI machine is shared) fails as a near-hang.
#: ``SEGKIT_FUZZ_EXAMPLES=5000`` hunts longer (by hand, not in CI).
EXAMPLES = int(os.environ.get("SEGKIT_FUZZ_EXAMPLES", "60"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=timedelta(seconds=10),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
#: For targets whose every example builds a model or validates a dataset (~0.1 s).
FUZZ_SLOW = settings(FUZZ, max_examples=max(1, EXAMPLES // 3))

#: Numbers JSON can hold, hostile ones included (huge, negative, NaN, infinities).
json_numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, -1, 255, 256, 65535, 2**31, 2**63, 1e308, -0.0]),
)
json_scalars = st.one_of(
    st.none(), st.booleans(), json_numbers, st.text(max_size=12), st.sampled_from(["", "a", "\n"])
)
#: Any JSON value, nested a few levels.
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def result_or_segkit_error(call: Callable[[], T]) -> T | SegkitError:
    """``call()``'s result, or the ``SegkitError`` it raised (which must be one line)."""
    try:
        return call()
    except SegkitError as error:
        text = str(error)
        assert text and "\n" not in text, repr(text)
        return error


def mutate(value: Any, data: st.DataObject) -> Any:
    """``value`` with one field (at any depth) replaced by an arbitrary JSON value."""
    if isinstance(value, dict) and value and data.draw(st.booleans()):
        key = data.draw(st.sampled_from(sorted(value)))
        return {**value, key: mutate(value[key], data)}
    if isinstance(value, list) and value and data.draw(st.booleans()):
        index = data.draw(st.integers(0, len(value) - 1))
        return [*value[:index], mutate(value[index], data), *value[index + 1 :]]
    return data.draw(json_values)
