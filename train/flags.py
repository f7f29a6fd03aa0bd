"""Command-line options from a config dataclass: one option per field, typed by its annotation."""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from collections.abc import Callable, Mapping


def parse_bool(text: str) -> bool:
    t = str(text).strip().lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def add_dataclass_flags(group, cls, *, prefix: str = "", skip=(), extra: Mapping[str, Mapping] | None = None,
                        bare_bool: bool = True) -> None:
    """Add an option for every field of dataclass `cls` (but `skip`) to the argparse `group`.

    Options: --kebab-case-name (dest: the field's name); with a `prefix` such as "model.", the
    field's own spelling after it: --model.d_model (dest "model.d_model"). No option has a default
    (argparse.SUPPRESS): only what is given lands in the namespace, to override a config.

    A field's metadata (or `extra[name]`, for dataclasses whose fields carry none) may give:
      help    the option's help, followed by its default (no help: the option shows none);
      parse   text -> value (otherwise from the annotation: bool, int, float, str, X | None with
              "none", anything else JSON);
      show    value -> text of the default, as typed on the command line.
    `bare_bool`: a bool option given alone means true (--tensorboard; else --model.ssm true).
    """
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        meta = {**f.metadata, **(extra or {}).get(f.name, {})}
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
        kind = hints[f.name]
        bare = bare_bool and kind is bool
        text = meta.get("help")
        show = meta.get("show", _default_text)
        group.add_argument(f"--{prefix}{f.name}" if prefix else f"--{f.name.replace('_', '-')}",
                           dest=prefix + f.name, type=_with_reasons(meta.get("parse") or _parser_for(kind)),
                           default=argparse.SUPPRESS, metavar="BOOL" if bare else f.name.upper(),
                           help=text and f"{text} (default: {show(default)})",
                           **({"nargs": "?", "const": True} if bare else {}))


_KINDS = {int: "an integer", float: "a number"}


def _with_reasons(parse: Callable[[str], typing.Any]) -> Callable[[str], typing.Any]:
    """`parse`, but a ValueError it raises reaches the user as its own message (what is allowed)
    rather than argparse's "invalid parse_curriculum value". int and float keep argparse's wording,
    "invalid int value: 'ten'", which says it already."""
    if parse in (int, float, str):
        return parse

    def parse_value(text: str):
        try:
            return parse(text)
        except json.JSONDecodeError as e:
            raise argparse.ArgumentTypeError(f"{text!r} is not valid JSON ({e})") from None
        except ValueError as e:              # ArgumentTypeError is not one: it passes as it is
            raise argparse.ArgumentTypeError(f"{e} (got {text!r})") from None
    return parse_value


def _parser_for(tp) -> Callable[[str], typing.Any]:
    """An argparse `type` for a field's annotation."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    optional = typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in typing.get_args(tp)
    if optional and len(args) == 1:
        inner = _parser_for(args[0])

        def optional_value(text: str):
            if text.strip().lower() == "none":
                return None
            try:
                return inner(text)
            except ValueError:
                if inner not in _KINDS:
                    raise
                raise argparse.ArgumentTypeError(f"expected {_KINDS[inner]} or none; got {text!r}") from None
        return optional_value
    if tp is bool:
        return parse_bool
    if tp in (int, float, str):
        return tp
    return json.loads


def _default_text(value) -> str:
    """A default as a user would type it on the command line."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value)
    return str(value)
