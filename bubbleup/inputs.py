"""Users' YAML files read, and what is wrong with them said in one line naming the file and the field.

One reader for every file a user writes (scenarios, campaigns), so each refuses bad input the same way:
a missing or unreadable file, YAML that does not parse (with its line and column), a key given twice
(YAML's "last one wins" would silently drop the first), nesting deep enough to exhaust the parser's
recursion, and an empty file. :func:`validation_line` turns a pydantic error into ``field: problem``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from bubbleup.errors import UserError


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses a mapping with the same key twice."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # ``<<: *anchor``: merged by the base class, not a key
                continue
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, (str, int, float, bool)):
                continue  # a list or mapping as a key: the base class refuses it in its own words
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path, what: str) -> Any:
    """The file's data; ``UserError`` in one line for every way it can be unusable. ``what``: ``scenario``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, not a {what} file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read: {exc}") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(parse)"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"{path}: {where}: invalid YAML: {problem}") from None
    except RecursionError:
        raise UserError(f"{path}: (top level): invalid YAML: nested too deeply to read") from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts (sys.get_int_max_str_digits)
        raise UserError(f"{path}: (parse): invalid YAML: {exc}") from None
    if data is None:
        raise UserError(f"{path}: (top level): the file is empty")
    return data


def _key_text(key: object) -> str:
    """A key as it appears in a field path; quoted when it is empty or holds spaces, newlines or other
    unprintable characters, so the path stays readable and the error stays one line."""
    text = str(key)
    return text if text and text.isprintable() and not any(c.isspace() for c in text) else repr(text)


def _is_union_tag(key: object) -> bool:
    """pydantic names the member of a union it tried (``str``, ``list[str]``, ``function-after[...]``) in the
    location; a user's file has no such key."""
    return isinstance(key, str) and (key in ("str", "int", "float", "bool", "none") or "[" in key
                                     or key.startswith(("constrained-", "function-")))  # fmt: skip


def _strip(loc: tuple[int | str, ...], unknown_key: bool = False) -> tuple[int | str, ...]:
    """The location without pydantic's union tags; an unknown key's own name is the user's, whatever it is."""
    keep = len(loc) - 1 if unknown_key else len(loc)
    return tuple(p for i, p in enumerate(loc) if i >= keep or not _is_union_tag(p))


def validation_line(exc: ValidationError, what: str = "scenario") -> tuple[str, str]:
    """(field, problem) of the first error, with a count of the others: what a one-line refusal says."""
    errors = exc.errors()
    extra = [e for e in errors if e["type"] == "extra_forbidden"]
    first = extra[0] if extra else errors[0]  # an unknown key explains a missing one (a typo): name it first
    field = ".".join(_key_text(p) for p in _strip(first["loc"], first["type"] == "extra_forbidden")) or "(top level)"
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = f"unknown key (not part of the {what} format)"
    elif first["type"] == "missing":
        msg = "required but missing"
    elif first["type"] == "finite_number":
        msg = "must be a finite number (not nan or inf)"
    msg = msg.replace("Value error, ", "")
    alternatives = list(dict.fromkeys(e["msg"] for e in errors if len(e["loc"]) == len(first["loc"])
                                      and _strip(e["loc"]) == _strip(first["loc"])))  # fmt: skip
    if len(alternatives) > 1 and any(_is_union_tag(p) for p in first["loc"]):  # each form it may take, refused
        msg = "should be " + " or ".join(a.removeprefix("Input should be ") for a in alternatives)
    # Model-level validators name the field they are about as "field: problem".
    head, sep, rest = msg.partition(": ")
    if sep and head.replace(".", "").replace("_", "").isalnum() and " " not in head:
        field = f"{field}.{head}" if field != "(top level)" else head
        msg = rest
    others = len({_strip(e["loc"]) for e in errors}) - 1
    if others > 0:
        msg += f" (and {others} more problem{'s' if others > 1 else ''})"
    return field, msg


def output_path(path: str | Path, what: str, flag: str = "--out") -> Path:
    """A file the user named for output, checked before any work is done (a calibration took minutes before it
    found ``--out`` was a directory): not a directory, and its directory can be made."""
    out = Path(path)
    if out.is_dir():
        raise UserError(f"{out}: is a directory; {flag} names the {what} to write")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{out}: cannot create its directory: {exc.strerror or exc}") from None
    return out
