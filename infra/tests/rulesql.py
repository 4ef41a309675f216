"""The IoT rule SQL forms the stack uses, read without AWS: the SELECT list and the FROM topic filter, MQTT
topic matching, and what the ingest function accepts as the fields of an event."""

from __future__ import annotations

import re


def mqtt_match(topic_filter: str, topic: str) -> bool:
    f, t = topic_filter.split("/"), topic.split("/")
    for i, part in enumerate(f):
        if part == "#":
            return True
        if i >= len(t):
            return False
        if part != "+" and part != t[i]:
            return False
    return len(f) == len(t)


def split_select(select: str) -> list[str]:
    """The items of a SELECT list: commas inside parentheses or quotes do not split."""
    items, depth, quote, cur = [], 0, "", ""
    for c in select:
        if quote:
            quote = "" if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == "," and depth == 0:
            items.append(cur.strip())
            cur = ""
            continue
        cur += c
    return items + [cur.strip()]


def parse_rule_sql(sql: str) -> tuple[list[str], str] | None:
    m = re.fullmatch(r"\s*SELECT\s+(?P<select>.+?)\s+FROM\s+'(?P<topic>[^']+)'(\s+WHERE\s+.+)?\s*", sql, re.I | re.S)
    if not m:
        return None
    return split_select(m.group("select")), m.group("topic")


# Identity only from the topic: the payload travels as one opaque field, so none of the device's own keys
# becomes a field of the event (functions/ingest/src/event.rs reads exactly these three).
RULE_SELECT = {
    "payload": r"encode\(\s*\*\s*,\s*'base64'\s*\)",
    "device": r"topic\((\d+)\)",
    "received_at": r"timestamp\(\)",
}


def select_problems(select: list[str]) -> list[str]:
    """What is wrong with a SELECT list, measured against RULE_SELECT: every item aliased, each of the
    three fields there in its form, nothing else."""
    problems, aliases = [], {}
    for item in select:
        m = re.fullmatch(r"(?P<expr>.+?)\s+AS\s+(?P<alias>\w+)", item, re.I | re.S)
        if not m:
            problems.append(f"SQL selects {item!r}: the device's own fields must not become fields of the event (select encode(*, 'base64') AS payload)")
            continue
        aliases[m.group("alias")] = m.group("expr").strip()
    for alias, pattern in RULE_SELECT.items():
        if alias not in aliases:
            problems.append(f"SQL must select {alias}")
        elif not re.fullmatch(pattern, aliases[alias], re.I):
            problems.append(f"SQL selects {aliases[alias]!r} AS {alias}, not {pattern}")
    for alias in sorted(set(aliases) - set(RULE_SELECT)):
        problems.append(f"SQL selects {alias}, which the function does not accept in an event")
    return problems
