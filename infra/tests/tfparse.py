"""A small, read-only model of the Terraform under infra/, for the wiring checks.

Parsing is done by the `hcl2` module that checkov ships (PyPI `bc-python-hcl2`). It wraps every
attribute value in a one-element list and every block in a list of dicts; `attr` and `blocks` below
undo that. Expressions come back as strings such as "${aws_s3_bucket.models.arn}/models/*".

`resolve` substitutes `local.*` references so that a policy's resources read as the ARNs they will be
(leaving data sources and variables symbolic), and turns HCL's `$${` escape into the literal `${`
that AWS sees, e.g. the IoT policy variable ${iot:Connection.Thing.ThingName}.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import hcl2

META_KEYS = {"__start_line__", "__end_line__"}


@dataclass
class Block:
    """A top-level block: resource, data, module, variable or output."""

    kind: str
    type: str  # resource/data type; "" for module, variable, output
    name: str
    body: dict
    file: Path
    start: int  # 1-based line numbers, inclusive
    end: int

    @property
    def address(self) -> str:
        prefix = {"resource": "", "data": "data.", "module": "module.", "variable": "var.", "output": "output."}[self.kind]
        return f"{prefix}{self.type + '.' if self.type else ''}{self.name}"

    def text(self) -> str:
        lines = self.file.read_text().splitlines()
        return "\n".join(lines[self.start - 1 : self.end])


@dataclass
class Module:
    """All .tf files of one directory."""

    path: Path
    blocks: list[Block] = field(default_factory=list)
    locals: dict[str, Any] = field(default_factory=dict)

    # -- lookups ---------------------------------------------------------------

    def resources(self, rtype: str | None = None) -> list[Block]:
        return [b for b in self.blocks if b.kind == "resource" and (rtype is None or b.type == rtype)]

    def resource(self, rtype: str, name: str) -> Block | None:
        return next((b for b in self.resources(rtype) if b.name == name), None)

    def data(self, dtype: str | None = None) -> list[Block]:
        return [b for b in self.blocks if b.kind == "data" and (dtype is None or b.type == dtype)]

    def data_source(self, dtype: str, name: str) -> Block | None:
        return next((b for b in self.data(dtype) if b.name == name), None)

    def variables(self) -> dict[str, Block]:
        return {b.name: b for b in self.blocks if b.kind == "variable"}

    def outputs(self) -> dict[str, Block]:
        return {b.name: b for b in self.blocks if b.kind == "output"}

    def module_calls(self) -> dict[str, Block]:
        return {b.name: b for b in self.blocks if b.kind == "module"}

    def files(self) -> list[Path]:
        return sorted(self.path.glob("*.tf"))

    # -- values ----------------------------------------------------------------

    def resolve(self, value: Any, _depth: int = 0) -> Any:
        """Substitute local.* references (recursively) and unescape $${ to ${."""
        if _depth > 20:
            raise ValueError(f"local values nest too deep (cycle?) at {value!r}")
        if isinstance(value, list):
            out: list = []
            for item in value:
                r = self.resolve(item, _depth + 1)
                out.extend(r if isinstance(r, list) and _is_expansion(item) else [r])
            return out
        if not isinstance(value, str):
            return value
        # [for x in local.list : "template"] -> expanded list
        m = re.fullmatch(r'\$\{\[for (\w+) in local\.(\w+) : "(.*)"\]\}', value, re.S)
        if m:
            var, lname, template = m.groups()
            items = self.resolve(self.local(lname), _depth + 1)
            if not isinstance(items, list):
                raise ValueError(f"local.{lname} is not a list")
            return [self.resolve(template.replace("${" + var + "}", str(item)), _depth + 1) for item in items]
        # a whole-value reference keeps the local's type (list, map, ...)
        m = re.fullmatch(r"\$\{local\.(\w+)\}", value)
        if m:
            return self.resolve(self.local(m.group(1)), _depth + 1)

        def sub(match: re.Match) -> str:
            resolved = self.resolve(self.local(match.group(1)), _depth + 1)
            if not isinstance(resolved, str):
                raise ValueError(f"local.{match.group(1)} is not a string but is interpolated into {value!r}")
            return resolved.replace("${", "\0")  # keep already-literal ${ from re-resolution

        s = re.sub(r"\$\{local\.(\w+)\}", sub, value)
        return s.replace("$${", "${").replace("\0", "${")

    def local(self, name: str) -> Any:
        if name not in self.locals:
            raise KeyError(f"local.{name} is not defined in {self.path}")
        return self.locals[name]


def _is_expansion(item: Any) -> bool:
    return isinstance(item, str) and (item.startswith("${[for ") or re.fullmatch(r"\$\{local\.\w+\}", item) is not None)


def attr(body: dict, key: str, default: Any = None) -> Any:
    """Value of attribute `key` in a parsed block body."""
    if key not in body:
        return default
    value = body[key]
    if isinstance(value, list) and len(value) == 1:
        return value[0]
    return value


def blocks(body: dict, key: str) -> list[dict]:
    """Nested blocks `key { ... }` of a parsed block body (empty list if none)."""
    value = body.get(key, [])
    return [b for b in value if isinstance(b, dict)]


def as_list(value: Any) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def load_module(path: Path) -> Module:
    mod = Module(path=path)
    for f in sorted(path.glob("*.tf")):
        with f.open() as fh:
            parsed = hcl2.load(fh)
        for kind in ("resource", "data"):
            for entry in parsed.get(kind, []):
                for rtype, named in entry.items():
                    for name, body in named.items():
                        mod.blocks.append(Block(kind, rtype, name, body, f, body["__start_line__"], body["__end_line__"]))
        for kind in ("module", "variable", "output"):
            for entry in parsed.get(kind, []):
                for name, body in entry.items():
                    mod.blocks.append(Block(kind, "", name, body, f, body.get("__start_line__", 0), body.get("__end_line__", 0)))
        for entry in parsed.get("locals", []):
            for key, value in entry.items():
                if key not in META_KEYS:
                    mod.locals[key] = value[0] if isinstance(value, list) and len(value) == 1 else value
    return mod


def module_dirs(infra: Path) -> list[Path]:
    """Every directory of infra/ that holds .tf files (modules and environments)."""
    return sorted({p.parent for p in infra.rglob("*.tf") if ".terraform" not in p.parts})


# -- policy statements ---------------------------------------------------------


@dataclass
class Statement:
    doc: Block
    index: int
    body: dict
    text: str  # source text of the statement block, comments included

    @property
    def sid(self) -> str:
        return attr(self.body, "sid", f"#{self.index}")

    @property
    def effect(self) -> str:
        return attr(self.body, "effect", "Allow")

    def where(self) -> str:
        return f"{self.doc.file.name}: {self.doc.address} statement {self.sid}"


def statement_texts(doc: Block) -> list[str]:
    """Source text of each `statement { ... }` of a policy document block, in order."""
    lines = doc.text().splitlines()
    texts, i = [], 0
    while i < len(lines):
        if re.match(r"^\s*statement\s*\{\s*$", lines[i]):
            depth, j = 0, i
            while j < len(lines):
                depth += net_brackets(lines[j])
                if depth == 0:
                    break
                j += 1
            texts.append("\n".join(lines[i : j + 1]))
            i = j + 1
        else:
            i += 1
    return texts


def net_brackets(text: str, opens: str = "{", closes: str = "}") -> int:
    """Net count of opening minus closing brackets outside strings and comments (the braces of
    ${...} sit inside strings)."""
    depth, in_string, i = 0, False, 0
    while i < len(text):
        c = text[i]
        if in_string:
            if c == "\\":
                i += 1
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c == "#" or text.startswith("//", i):
            break
        elif c in opens:
            depth += 1
        elif c in closes:
            depth -= 1
        i += 1
    return depth


def statements(doc: Block) -> Iterator[Statement]:
    parsed = blocks(doc.body, "statement")
    texts = statement_texts(doc)
    if len(parsed) != len(texts):
        raise ValueError(f"{doc.address}: parsed {len(parsed)} statements but found {len(texts)} in the text")
    for i, (body, text) in enumerate(zip(parsed, texts)):
        yield Statement(doc, i, body, text)


def reference(expr: Any) -> str | None:
    """`${data.aws_iam_policy_document.x.json}` -> `data.aws_iam_policy_document.x.json` (None if not a bare reference)."""
    if not isinstance(expr, str):
        return None
    m = re.fullmatch(r"\$\{([A-Za-z0-9_.\[\]\"-]+)\}", expr)
    return m.group(1) if m else None


def policy_doc_name(expr: Any) -> str | None:
    """Name of the aws_iam_policy_document a `policy = ...` expression uses, else None."""
    ref = reference(expr)
    if not ref:
        return None
    m = re.fullmatch(r"data\.aws_iam_policy_document\.(\w+)(\[0\])?\.json", ref)
    return m.group(1) if m else None
