"""docs/protocol.md and ``multiengine.wire.protocol`` describe the same protocol.

The doc's §3 has one table per channel and sender, under a heading
``### <Client|Engine|Heartbeat|Direct> channel: <sender> → <receiver>``, one row per message
type: ``| `type` | `field`, `field` | ... |`` (``—`` for no fields). It also has a
``### Structured items`` table (``| `Item` | `field`, ... | ... |``, fields in order) and
a ``### Commands`` table (``| `cmd` | arguments | run by | ... |``). The tables are read
strictly: a missing heading, a second table under one, a row with the wrong number of
cells, or a first or second cell that is not exactly names in backticks fails the test
rather than being skipped.

Checked against the code:

(a) the (channel, sender, type) rows are exactly those of ``MESSAGES``;
(b) each row lists exactly that type's ``fields`` (``t`` excluded);
(c) the structured items are exactly the named tuples of ``wire/protocol.py``, each with
    its ``_fields`` in order;
(d) the commands are exactly ``ENGINE_COMMANDS | CONTROLLER_COMMANDS``, each run by the
    side its set says;
(e) the engine's ``COMMANDS`` table has exactly ``ENGINE_COMMANDS``;
(f) the doc names the version ``wire/message.py`` sends (``DELIM``) as the current one,
    and mentions another version only beside it;
(g) every message type constant of ``wire/protocol.py`` is used by another module under
    ``src/multiengine``: the table holds no dead types.
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Iterable
from pathlib import Path

from multiengine.engine.commands import COMMANDS
from multiengine.wire import message
from multiengine.wire import protocol as P

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "protocol.md"
SRC = ROOT / "src" / "multiengine"
PROTOCOL_PY = SRC / "wire" / "protocol.py"

CHANNELS = {
    "Client": P.CLIENT_CHANNEL,
    "Engine": P.ENGINE_CHANNEL,
    "Heartbeat": P.HEARTBEAT_CHANNEL,
    "Direct": P.DIRECT_CHANNEL,
}
# the two ends of each channel (the direct channel: a client and an engine of one host)
ENDS = {
    P.CLIENT_CHANNEL: {P.CONTROLLER, P.CLIENT},
    P.ENGINE_CHANNEL: {P.CONTROLLER, P.ENGINE},
    P.HEARTBEAT_CHANNEL: {P.CONTROLLER, P.ENGINE},
    P.DIRECT_CHANNEL: {P.CLIENT, P.ENGINE},
}
CHANNEL_HEADING = re.compile(r"### (\w+) channel: (\w+) → (\w+)")
NAME = r"`([A-Za-z_][A-Za-z0-9_]*)`"
NAMES = re.compile(rf"{NAME}(?:, {NAME})*")
NONE = "—"

Key = tuple[str, str, str]  # (channel, sender, type)


# ---------------------------------------------------------------- reading the doc
@functools.cache
def doc_text() -> str:
    return DOC.read_text(encoding="utf-8")


@functools.cache
def sections() -> tuple[tuple[str, tuple[str, ...]], ...]:
    """(heading, the lines under it up to the next heading) for every heading; headings
    inside code fences do not count."""
    out: list[tuple[str, list[str]]] = []
    fenced = False
    for line in doc_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        if not fenced and line.startswith("#"):
            out.append((line.rstrip(), []))
        elif out:
            out[-1][1].append(line)
    return tuple((heading, tuple(lines)) for heading, lines in out)


def cells(line: str, where: str) -> list[str]:
    assert line.startswith("|") and line.endswith("|"), f"{where}: not a table row: {line!r}"
    return [c.strip() for c in line[1:-1].split("|")]


def table(heading: str) -> tuple[list[str], list[list[str]]]:
    """The header cells and body rows of the one table under ``heading``."""
    found = [lines for h, lines in sections() if h == heading]
    assert len(found) == 1, f"docs/protocol.md has {len(found)} headings {heading!r}, not 1"
    blocks: list[list[str]] = []
    previous = ""
    for line in found[0]:
        if line.startswith("|"):
            if not previous.startswith("|"):
                blocks.append([])
            blocks[-1].append(line.rstrip())
        previous = line
    assert len(blocks) == 1, f"{heading}: {len(blocks)} tables, not 1"
    head, separator, *body = blocks[0]
    header = cells(head, heading)
    dashes = cells(separator, heading)
    assert len(dashes) == len(header) and all(re.fullmatch(r":?-+:?", d) for d in dashes), (
        f"{heading}: malformed separator row {separator!r}"
    )
    assert body, f"{heading}: the table has no rows"
    rows = [cells(line, heading) for line in body]
    for row, line in zip(rows, body, strict=True):
        assert len(row) == len(header), (
            f"{heading}: {len(row)} cells where the header has {len(header)}: {line!r}"
        )
    return header, rows


def one_name(cell: str, where: str) -> str:
    m = re.fullmatch(NAME, cell)
    assert m, f"{where}: first cell {cell!r} is not one name in backticks"
    return m[1]


def name_list(cell: str, where: str) -> list[str]:
    """Names in backticks separated by ", ", or none for "—"."""
    if cell == NONE:
        return []
    assert NAMES.fullmatch(cell), (
        f"{where}: {cell!r} is not a list of names in backticks (or {NONE!r} for none)"
    )
    names = re.findall(NAME, cell)
    assert len(names) == len(set(names)), f"{where}: a name is listed twice in {cell!r}"
    return names


@functools.cache
def documented_messages() -> dict[Key, frozenset[str]]:
    """(channel, sender, type) -> header fields, from the channel tables of §3."""
    headings = [h for h, _ in sections() if "channel:" in h]
    assert headings, "docs/protocol.md has no '### ... channel: ... → ...' headings"
    out: dict[Key, frozenset[str]] = {}
    for heading in headings:
        m = CHANNEL_HEADING.fullmatch(heading)
        assert m and m[1] in CHANNELS, (
            f"malformed heading {heading!r}: expected "
            "'### <Client|Engine|Heartbeat|Direct> channel: <sender> → <receiver>'"
        )
        channel, sender, receiver = CHANNELS[m[1]], m[2], m[3]
        assert {sender, receiver} == ENDS[channel], (
            f"{heading}: the {channel} channel joins {' and '.join(sorted(ENDS[channel]))}"
        )
        for row in table(heading)[1]:
            type_ = one_name(row[0], heading)
            assert (channel, sender, type_) not in out, f"{heading}: `{type_}` listed twice"
            out[(channel, sender, type_)] = frozenset(name_list(row[1], f"{heading}, `{type_}`"))
    return out


def code_messages() -> dict[Key, frozenset[str]]:
    out = {(m.channel, m.sender, m.type): m.fields for m in P.MESSAGES}
    assert len(out) == len(P.MESSAGES), "MESSAGES lists a (channel, sender, type) twice"
    return out


def describe(key: Key) -> str:
    channel, sender, type_ = key
    return f"`{type_}` ({channel} channel, from the {sender})"


def differences(what: str, in_code: Iterable[object], in_docs: Iterable[object]) -> str:
    code, docs = set(in_code), set(in_docs)
    lines = [f"docs/protocol.md and wire/protocol.py disagree on {what}:"]
    if code - docs:
        lines.append(f"  missing in docs: {', '.join(sorted(map(str, code - docs)))}")
    if docs - code:
        lines.append(f"  missing in code: {', '.join(sorted(map(str, docs - code)))}")
    return "\n".join(lines)


# ---------------------------------------------------------------- (a), (b) messages
def test_the_doc_has_a_table_for_every_channel_and_sender() -> None:
    documented = {(c, s) for c, s, _ in documented_messages()}
    expected = {(m.channel, m.sender) for m in P.MESSAGES}
    assert documented == expected, differences("the (channel, sender) tables", expected, documented)


def test_message_types_match_MESSAGES() -> None:
    code, docs = code_messages(), documented_messages()
    missing_in_docs = [describe(k) for k in sorted(code.keys() - docs.keys())]
    missing_in_code = [describe(k) for k in sorted(docs.keys() - code.keys())]
    assert not missing_in_docs and not missing_in_code, (
        "message types of docs/protocol.md §3 and MESSAGES differ:\n"
        f"  missing in docs: {missing_in_docs}\n  missing in code: {missing_in_code}"
    )


def test_each_message_type_lists_exactly_its_fields() -> None:
    code, docs = code_messages(), documented_messages()
    problems = []
    for key in sorted(code.keys() & docs.keys()):
        if code[key] != docs[key]:
            problems.append(
                f"{describe(key)}: missing in docs: {sorted(code[key] - docs[key])}, "
                f"missing in code: {sorted(docs[key] - code[key])}"
            )
    assert not problems, "header fields differ:\n  " + "\n  ".join(problems)


# ---------------------------------------------------------------- (c) structured items
def named_tuples() -> dict[str, tuple[str, ...]]:
    """Every named tuple class defined in wire/protocol.py, with its fields."""
    return {
        name: obj._fields
        for name, obj in vars(P).items()
        if isinstance(obj, type)
        and issubclass(obj, tuple)
        and hasattr(obj, "_fields")
        and obj.__module__ == P.__name__
    }


def test_the_structured_items_are_the_named_tuples() -> None:
    code = named_tuples()
    assert {"Xfer", "PartHeader", "TaskLink", "TaskItem", "TaskFlags", "ErrorReport"} <= set(code)
    heading = "### Structured items"
    docs: dict[str, tuple[str, ...]] = {}
    for row in table(heading)[1]:
        item = one_name(row[0], heading)
        assert item not in docs, f"{heading}: `{item}` listed twice"
        docs[item] = tuple(name_list(row[1], f"{heading}, `{item}`"))
    assert set(docs) == set(code), differences("the structured items", code, docs)
    wrong = [
        f"`{item}`: docs {list(docs[item])}, code {list(fields)}"
        for item, fields in sorted(code.items())
        if docs[item] != fields
    ]
    assert not wrong, "structured items whose fields (in order) differ:\n  " + "\n  ".join(wrong)


# ---------------------------------------------------------------- (d), (e) commands
def test_the_commands_table_lists_every_command() -> None:
    heading = "### Commands"
    header, rows = table(heading)
    assert header[0] == "`cmd`" and "run by" in header, f"{heading}: unexpected header {header}"
    run_by = header.index("run by")
    docs: dict[str, str] = {}
    for row in rows:
        cmd = one_name(row[0], heading)
        assert cmd not in docs, f"{heading}: `{cmd}` listed twice"
        docs[cmd] = row[run_by]
    code = P.ENGINE_COMMANDS | P.CONTROLLER_COMMANDS
    assert set(docs) == code, differences("the commands", code, docs)
    expected = {c: "engine" for c in P.ENGINE_COMMANDS} | {
        c: "controller" for c in P.CONTROLLER_COMMANDS
    }
    wrong = [
        f"`{c}`: docs {docs[c]!r}, code {expected[c]!r}"
        for c in sorted(code)
        if docs[c] != expected[c]
    ]
    assert not wrong, "commands run by the wrong side:\n  " + "\n  ".join(wrong)


def test_the_engine_runs_exactly_the_engine_commands() -> None:
    assert set(COMMANDS) == P.ENGINE_COMMANDS, (
        "engine/commands.py COMMANDS and wire/protocol.py ENGINE_COMMANDS differ:\n"
        f"  missing in COMMANDS: {sorted(P.ENGINE_COMMANDS - set(COMMANDS))}\n"
        f"  missing in ENGINE_COMMANDS: {sorted(set(COMMANDS) - P.ENGINE_COMMANDS)}"
    )


# ---------------------------------------------------------------- (f) the version
def test_the_doc_names_the_current_version() -> None:
    current = message.DELIM.decode()
    text = doc_text()
    named = re.findall(r"protocol version `(ME/\d+)`", text)
    assert named and set(named) == {current}, (
        f"docs/protocol.md must say 'protocol version `{current}`' (wire/message.py DELIM), "
        f"and no other; it says {named}"
    )
    delimiters = re.findall(r'b"(ME/\d+)"', text)
    assert delimiters and set(delimiters) == {current}, (
        f'the frames of docs/protocol.md must start with b"{current}", not {delimiters}'
    )
    for paragraph in re.split(r"\n\s*\n", text):
        others = set(re.findall(r"ME/\d+", paragraph)) - {current}
        assert not others or current in paragraph, (
            f"docs/protocol.md mentions {sorted(others)} without the current {current}:\n"
            f"{paragraph}"
        )


# ---------------------------------------------------------------- (g) no dead types
def protocol_names_used() -> set[str]:
    """Names of wire/protocol.py that other modules under src/multiengine use: attributes
    of the module (``P.SUBMIT``) and names imported from it."""
    used: set[str] = set()
    for path in sorted(SRC.rglob("*.py")):
        if path == PROTOCOL_PY:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        aliases: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                module = (node.module or "").split(".")[-1]
                if module == "protocol":
                    used.update(a.name for a in node.names)
                elif module in ("", "wire"):
                    aliases.update(a.asname or a.name for a in node.names if a.name == "protocol")
            elif isinstance(node, ast.Import):
                aliases.update(
                    a.asname for a in node.names if a.name.endswith("wire.protocol") and a.asname
                )
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
            ):
                used.add(node.attr)
    return used


def test_every_message_type_constant_is_used() -> None:
    types = {m.type for m in P.MESSAGES}
    constants = {
        name: value
        for name, value in vars(P).items()
        if name.isupper() and isinstance(value, str) and value in types
    }
    spelled_out = sorted(types - set(constants.values()))
    assert not spelled_out, f"message types with no constant in wire/protocol.py: {spelled_out}"
    used = protocol_names_used()
    assert "SUBMIT" in used and "check_header" in used, "the scan of src/multiengine found nothing"
    dead = sorted(name for name in constants if name not in used)
    assert not dead, (
        "message type constants of wire/protocol.py that no other module under "
        f"src/multiengine uses (dead types in MESSAGES?): {dead}"
    )
