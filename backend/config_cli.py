"""Command-line options generated from frozen config dataclasses (the docstring under a field is its help)."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import textwrap
import typing
from pathlib import Path
from typing import Any


def field_docs(cls: type) -> dict[str, str]:
    """{field name: the string literal right below it} from the class source."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs = {}
    for node, following in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)):
            docs[node.target.id] = " ".join(following.value.value.split())
    return docs


def add_config_arguments(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = ()) -> None:
    """One `--field-name` option per dataclass field (bool fields become --flag / --no-flag)."""
    docs = field_docs(cls)
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if field.name in skip:
            continue
        kind = hints[field.name]
        options = typing.get_args(kind)
        base = next((arg for arg in options if arg is not type(None)), kind) if options else kind
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
        flag = "--" + field.name.replace("_", "-")
        help_text = f"{docs.get(field.name, '')} (default: {default})"
        if base is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=help_text)
        else:
            parser.add_argument(flag, type=base if base in (int, float, str, Path) else str, default=default,
                                metavar=field.name.upper(), help=help_text)


def config_from_args(cls: type, args: argparse.Namespace, **overrides: Any) -> Any:
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    return cls(**{**values, **overrides})
