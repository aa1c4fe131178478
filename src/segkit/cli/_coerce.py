"""Option values converted without pydantic, so a command starts ~0.15 s sooner.

Typer (0.2x) converts every option value through a pydantic ``TypeAdapter``: importing
pydantic and building the adapters costs more than a small command's whole work. The
options segkit declares are plain (text, whole and real numbers with bounds, paths
through a ``parser=``, enums, lists and pairs of those), so :func:`install` gives each
such parameter of a built click command a converter of its own, with the same results
(``tests/test_cli_coerce.py`` holds them against typer's on every parameter). Any other
parameter, or a Typer without this machinery, keeps Typer's own conversion.
"""

from __future__ import annotations

import enum
import math
import pathlib
import re
from collections.abc import Callable, Iterable
from typing import Any, get_args, get_origin

from typer import BadParameter

_WHOLE_WITH_ZEROS = re.compile(r"([+-]?[0-9_]+)\.0+")

#: What a leaf converter does: ``(value, param, ctx) -> converted`` or raise BadParameter.
Leaf = Callable[[Any, Any, Any], Any]

try:  # private to Typer: without it nothing is replaced, and Typer converts as before
    from typer._coercion import RuntimeParam as _RuntimeParam
    from typer._param_types import coerce_cli_choice as _coerce_choice
    from typer.core import _TyperParameter
except ImportError:  # pragma: no cover - another Typer
    _RuntimeParam = None  # type: ignore[assignment,misc]


def install(params: Iterable[Any]) -> None:
    """Give every plain parameter in ``params`` (a command's ``get_params(ctx)``, which
    includes the ``--help`` option whose absent value Typer converts too) the light
    converter."""
    if _RuntimeParam is None:  # pragma: no cover - another Typer
        return
    for param in params:
        if isinstance(param, _TyperParameter) and param._runtime_param is None:
            light = runtime_param(param)
            if light is not None:
                param._runtime_param = light


def runtime_param(param: Any) -> Any:
    """The light converter of a Typer parameter, or ``None`` where Typer's must stay."""
    descriptor = param.type_descriptor
    convert = _converter(descriptor.annotation, descriptor.parameter_info)
    if convert is None or descriptor.file_annotation is not None:
        return None
    return _LightParam(descriptor.parameter_info, descriptor.annotation, convert)


def _converter(annotation: Any, info: Any) -> Leaf | None:
    origin = get_origin(annotation)
    if origin is list:
        (item,) = get_args(annotation)
        leaf = _leaf(item, info)
        if leaf is None:
            return None
        return lambda value, param, ctx: [leaf(v, param, ctx) for v in _items(value)]
    if origin is tuple:
        leaves = [_leaf(item, info) for item in get_args(annotation)]
        if not leaves or None in leaves or Ellipsis in get_args(annotation):
            return None
        return lambda value, param, ctx: _pair(value, leaves, param, ctx)
    return _leaf(annotation, info)


def _items(value: Any) -> Any:
    return value if isinstance(value, list | tuple) else [value]


def _pair(value: Any, leaves: list[Any], param: Any, ctx: Any) -> tuple[Any, ...]:
    if not isinstance(value, list | tuple):
        raise BadParameter("value is not a valid tuple", ctx=ctx, param=param)
    if len(value) != len(leaves):
        raise BadParameter(
            f"{len(leaves)} values are required, but {len(value)} given.", ctx=ctx, param=param
        )
    return tuple(leaf(v, param, ctx) for leaf, v in zip(leaves, value, strict=True))


def _leaf(annotation: Any, info: Any) -> Leaf | None:
    if info.parser is not None:
        return _parsed(info.parser)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return _choice(tuple(annotation), info.case_sensitive)
    if annotation in (int, float):
        if info.clamp:
            return None
        return _number(annotation, info.min, info.max)
    if annotation is str:
        return _text
    if annotation is bool:
        return _flag
    if annotation is pathlib.Path and _plain_path(info):
        return _path
    return None


def _parsed(parser: Callable[[Any], Any]) -> Leaf:
    def convert(value: Any, param: Any, ctx: Any) -> Any:
        try:
            return parser(value)
        except (ValueError, TypeError) as error:  # what pydantic would have worded
            raise BadParameter(str(error), ctx=ctx, param=param) from None

    return convert


def _choice(choices: tuple[Any, ...], case_sensitive: bool) -> Leaf:
    def convert(value: Any, param: Any, ctx: Any) -> Any:
        try:
            return _coerce_choice(value, choices=choices, case_sensitive=case_sensitive, ctx=ctx)
        except ValueError as error:
            raise BadParameter(str(error), ctx=ctx, param=param) from None

    return convert


def _number(kind: type, low: float | None, high: float | None) -> Leaf:
    noun = "an integer" if kind is int else "a number"

    def convert(value: Any, param: Any, ctx: Any) -> Any:
        number = _to_number(kind, value)
        if number is None:
            raise BadParameter(f"{value!r} is not {noun}.", ctx=ctx, param=param)
        if (low is not None and not number >= low) or (high is not None and not number <= high):
            bounds = " and ".join(
                text
                for text in (
                    f"at least {low}" if low is not None else "",
                    f"at most {high}" if high is not None else "",
                )
                if text
            )
            raise BadParameter(f"{number} is out of range: must be {bounds}.", ctx=ctx, param=param)
        return number

    return convert


def _to_number(kind: type, value: Any) -> int | float | None:
    """``value`` as ``kind`` the way pydantic's lax mode takes it, else ``None``."""
    if isinstance(value, bool):
        return kind(value)
    if isinstance(value, int | float):
        if kind is int and isinstance(value, float):
            return int(value) if math.isfinite(value) and value.is_integer() else None
        return kind(value)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str) or not value.isascii():  # no "٣": ASCII digits only
        return None
    text = value.strip()
    if kind is int:
        whole = _WHOLE_WITH_ZEROS.fullmatch(text)  # "5.0" is 5; "5.5", "1e3", "3." are not
        text = whole.group(1) if whole else text
    try:
        return kind(text)
    except ValueError:
        return None


def _text(value: Any, param: Any, ctx: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


_TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE = frozenset({"", "0", "off", "f", "false", "n", "no"})


def _flag(value: Any, param: Any, ctx: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    text = value.strip().lower() if isinstance(value, str) else None
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise BadParameter(f"{value!r} is not a valid boolean.", ctx=ctx, param=param)


def _plain_path(info: Any) -> bool:
    return not (
        info.exists
        or info.resolve_path
        or info.allow_dash
        or info.path_type is not None
        or not info.file_okay
        or not info.dir_okay
        or info.writable
        or not info.readable
    )


def _path(value: Any, param: Any, ctx: Any) -> pathlib.Path:
    if isinstance(value, pathlib.Path):
        return value
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        raise BadParameter("Input is not a valid path", ctx=ctx, param=param)
    return pathlib.Path(value)


if _RuntimeParam is not None:

    class _LightParam(_RuntimeParam):
        """Typer's runtime-parameter contract, converting with a :data:`Leaf`."""

        def __init__(self, parameter_info: Any, annotation: Any, convert: Leaf) -> None:
            super().__init__(parameter_info=parameter_info, annotation=annotation)
            object.__setattr__(self, "_convert", convert)

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            return self._convert(value, param, ctx)
