"""Command-line flags generated from the config dataclasses.

Each dataclass field becomes ``--field-name`` with the field's type and the
help text of its docstring's ``Attributes:`` entry; a flag is stored only
when given (``argparse.SUPPRESS``), so it overrides a preset (or a resumed
run's saved settings) exactly when typed. A small generator rather than
tyro: tyro cannot keep today's spellings (``--optimizer`` for
``OptimizerConfig.name``, ``--no-temporal-links``, ``--link-sparsity 0``
for none) nor tell a typed flag from a default.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import typing
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple


@dataclasses.dataclass(frozen=True)
class Flag:
  """One generated flag: ``--name`` sets ``settings[section][field]``."""

  name: str
  section: str
  field: str
  convert: Callable[[Any], Any] = lambda value: value


def _docstring_help(cls) -> Dict[str, str]:
  """``{field: first line of its Attributes: entry}``."""
  doc = cls.__doc__ or ""
  helps = {}
  for match in re.finditer(r"^\s{4}(\w+): (.+)$", doc, re.MULTILINE):
    helps.setdefault(match.group(1), match.group(2).strip())
  return helps


def _base_type(annotation) -> Optional[type]:
  if isinstance(annotation, str):
    annotation = {"int": int, "float": float, "str": str, "bool": bool,
                  "Optional[int]": int, "Optional[float]": float,
                  "Optional[str]": str}.get(annotation)
  if typing.get_origin(annotation) is typing.Union:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    annotation = args[0] if len(args) == 1 else None
  return annotation if annotation in (int, float, str, bool) else None


def add_dataclass_flags(group, section: str, classes: Iterable[type],
                        skip: Iterable[str] = (),
                        rename: Optional[Dict[str, str]] = None,
                        convert: Optional[Dict[str, Callable]] = None,
                        helps: Optional[Dict[str, str]] = None,
                        seen: Optional[set] = None) -> List[Flag]:
  """Adds a flag per field of ``classes`` to ``group``; returns them.

  Args:
    group: an argparse parser or argument group.
    section: the settings section the fields fill.
    classes: dataclasses (fields of several are merged, first wins).
    skip: fields without a flag.
    rename: ``{field: flag name}`` where they differ; a bool field whose
      flag starts with ``no-`` stores ``False``.
    convert: ``{field: f}`` applied to the typed value.
    helps: help text overriding the docstring's.
    seen: flag names already taken (shared across calls).
  """
  rename, convert, helps = rename or {}, convert or {}, helps or {}
  seen = set() if seen is None else seen
  flags = []
  for cls in classes:
    hints = typing.get_type_hints(cls)
    doc = _docstring_help(cls)
    for field in dataclasses.fields(cls):
      if field.name in skip or field.name.startswith("_"):
        continue
      kind = _base_type(hints.get(field.name, field.type))
      if kind is None:
        continue
      name = rename.get(field.name, field.name.replace("_", "-"))
      if name in seen:
        continue
      seen.add(name)
      text = helps.get(field.name, doc.get(field.name, field.name))
      dest = f"{section}.{field.name}"
      if kind is bool:
        group.add_argument(f"--{name}", dest=dest,
                           action=("store_false" if name.startswith("no-")
                                   else "store_true"),
                           default=argparse.SUPPRESS, help=text)
      else:
        group.add_argument(f"--{name}", dest=dest, type=kind,
                           metavar=field.name.upper(),
                           default=argparse.SUPPRESS, help=text)
      flags.append(Flag(name, section, field.name,
                        convert.get(field.name, lambda value: value)))
  return flags


def given(args: argparse.Namespace, flags: Iterable[Flag]
          ) -> List[Tuple[Flag, Any]]:
  """The generated flags typed on the command line, with their values."""
  values = vars(args)
  return [(flag, flag.convert(values[f"{flag.section}.{flag.field}"]))
          for flag in flags if f"{flag.section}.{flag.field}" in values]
