"""Options declared once: a dataclass field plus metadata (help, choices, parsing, per-layer,
flag, host-only). The CLI's flags, TOML keys, sweep axes and docs/options.md all derive from it.

JAX-free on purpose: `digitnet --help` builds its flags from these declarations.
Regenerate the docs' table with `python -m digitnet.config > docs/options.md`.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Iterable
from typing import Any

from digitnet.errors import ConfigError


def option(default: Any = dataclasses.MISSING, help: str = "", *, choices: Iterable[str] = (),
           parse: Callable[[str], Any] | None = None, per_layer: bool = False,
           flag: str | None = None, host_only: bool = False, cli: bool = True,
           group: str | None = None, aliases: tuple[str, ...] = ()) -> Any:
    """A dataclass field carrying the option's metadata.

    choices: allowed values (each element's, for a per-layer option). parse: text (a flag's
    value, or a TOML string) → value. per_layer: one value per hidden layer, or one for all.
    host_only: never reaches the compiled program (runs differing only here share an engine).
    cli: False for fields that are set by the data, not by a user. aliases: names people try
    (learning_rate), offered as "did you mean" and never accepted silently."""
    meta = {"help": help, "choices": tuple(choices), "parse": parse, "per_layer": per_layer,
            "flag": flag, "host_only": host_only, "cli": cli, "group": group, "aliases": aliases}
    return dataclasses.field(default=default, metadata=meta)


def declared(cls: type) -> list[dataclasses.Field]:
    """The fields of an options dataclass, in declaration order."""
    return list(dataclasses.fields(cls))


def flag_name(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def default_of(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def kind(f: dataclasses.Field) -> type:
    """The Python type of a field's values, read from its default (annotations are strings)."""
    if f.metadata.get("per_layer") or f.metadata.get("parse"):
        return tuple
    return type(default_of(f))


def choose(name: str, value: Any, choices: Iterable[str]) -> None:
    """A ConfigError naming the choices (and the closest one) unless value is one of them."""
    choices = tuple(choices)
    if value not in choices:
        raise ConfigError(f"unknown {name} {value!r}; choose from {', '.join(choices)}"
                          + did_you_mean(str(value), choices))


def did_you_mean(word: str, candidates: Iterable[str], aliases: dict[str, str] | None = None) -> str:
    """'; did you mean X?' for the closest candidate (or alias's target), else ''."""
    aliases = aliases or {}
    key = word.lstrip("-").replace("-", "_")
    if key in aliases:
        return f"; did you mean {aliases[key]}?"
    pool = {c.lstrip("-").replace("-", "_"): c for c in candidates}
    close = difflib.get_close_matches(key, list(pool), n=1, cutoff=0.6)
    return f"; did you mean {pool[close[0]]}?" if close else ""


def parse_list(item: type) -> Callable[[str], tuple]:
    """A parser of comma-separated values of one type: '64,64' → (64, 64)."""
    def parse(text: str) -> tuple:
        try:
            return tuple(item(v.strip()) for v in text.split(",") if v.strip())
        except ValueError:
            what = {int: "integers", float: "numbers"}.get(item, "values")
            raise ValueError(f"expected comma-separated {what}, got {text!r}") from None
    parse.__name__ = f"list of {item.__name__}"
    return parse


def describe_default(f: dataclasses.Field) -> str:
    value = default_of(f)
    if isinstance(value, tuple):
        return ",".join(map(str, value)) if value else "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{value:g}" if isinstance(value, float) else str(value)


def add_flags(parser: Any, classes: Iterable[tuple[str, type]], groups: dict[str, str]) -> dict:
    """One flag per option of each (default group, dataclass), into the argparse groups titled
    by `groups`; help, choices and default come from the declaration. Values stay as given
    (None when absent) for digitnet.config.resolve to parse and validate."""
    import argparse

    made = {key: parser.add_argument_group(title) for key, title in groups.items()}
    for default_group, cls in classes:
        for f in declared(cls):
            if not f.metadata["cli"]:
                continue
            text = f.metadata["help"]
            if f.metadata["choices"]:
                text += f" ({', '.join(f.metadata['choices'])})"
            if default_of(f) not in (None, ()):
                text += f"; default {describe_default(f)}"
            value = kind(f)
            metavar = ("NAME" if f.metadata["choices"] and value is str else
                       "A,B" if value is tuple else {int: "N", float: "X"}.get(value, "TEXT"))
            extra: dict[str, Any] = ({"action": argparse.BooleanOptionalAction} if value is bool
                                     else {"type": value, "metavar": metavar} if value in (int, float)
                                     else {"metavar": metavar})
            made[f.metadata["group"] or default_group].add_argument(
                flag_name(f), dest=f.name, default=None, help=text.replace("%", "%%"), **extra)
    return made


def explain_usage(parser: Any, message: str, aliases: dict[str, str]) -> str:
    """argparse's error message, with a "did you mean" for an unknown command or flag."""
    import re

    if m := re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message):
        choices = re.findall(r"'([^']*)'", m[2])
        what = "command" if " " not in parser.prog else "choice"
        return f"unknown {what} {m[1]!r}{did_you_mean(m[1], choices)} (choose from {', '.join(choices)})"
    flags = [f for f in message.partition("unrecognized arguments: ")[2].split() if f.startswith("-")]
    if flags:
        return f"unknown option {flags[0]}" + did_you_mean(flags[0], all_flags(parser), aliases)
    return message


def all_flags(parser: Any) -> list[str]:
    """Every flag of an argparse parser and its sub-commands."""
    import argparse

    flags = []
    for action in parser._actions:
        flags += action.option_strings
        if isinstance(action, argparse._SubParsersAction):
            flags += [f for sub in action.choices.values() for f in all_flags(sub)]
    return flags


def markdown_table(classes: Iterable[tuple[str, type]]) -> str:
    """docs/options.md: one row per option, from the declarations."""
    out = ["# Options", "",
           "Generated from the declarations in `digitnet/spec.py`, `digitnet/trainconfig.py` and",
           "`digitnet/config.py` by `python -m digitnet.config > docs/options.md` (a test checks",
           "that it is current). Every option is a `digitnet train` flag, a key of a `--config`",
           "TOML file or a sweep's `[base]`/axes, and a keyword of `digitnet.fit`. Precedence:",
           "recipe < TOML file < flags (keywords). A per-layer option given one value applies to",
           "every hidden layer. *Host-only* options never reach the compiled program: runs that",
           "differ only in them share one compiled engine.", ""]
    for title, cls in classes:
        out += [f"## {title}", "", "| flag / key | default | choices | meaning |", "|---|---|---|---|"]
        for f in declared(cls):
            if not f.metadata.get("cli", True):
                continue
            notes = [f.metadata["help"]]
            if f.metadata.get("per_layer"):
                notes.append("(per layer)")
            if f.metadata.get("host_only"):
                notes.append("(host-only)")
            choices = ", ".join(f.metadata.get("choices", ()))
            out.append(f"| `{flag_name(f)}` / `{f.name}` | {describe_default(f)} | {choices} | "
                       f"{' '.join(notes)} |")
        out.append("")
    return "\n".join(out)

