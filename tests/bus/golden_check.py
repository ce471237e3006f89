#!/usr/bin/python3
"""golden_check.py - checks schemas/golden/ with Python's msgpack, independently of the C code.

Usage: golden_check.py GOLDEN_DIR ENVELOPE_MD   (prints TAP; exit status 1 on any failure)

For every type documented in schemas/envelope.md it:
  * decodes <type>.msgpack with Debian's python3-msgpack (no trailing bytes, no ext types,
    no duplicate keys) and checks the header rules and the body against the document's table;
  * compares the decoded envelope with <type>.json (ids as UUID text, floats vs ints kept apart,
    keys in the same order);
  * re-packs the decoded value and packs the JSON (ids as 16 bytes) with msgpack.packb, and
    requires both to equal the golden bytes: that is what a client in another language does.
Run with /usr/bin/python3 (Debian's interpreter, which has the msgpack module).
"""
import json
import math
import os
import re
import sys
import uuid

import msgpack

HEADER_KEYS = ["v", "type", "id", "corr", "cause", "ts", "src", "seq", "body"]
TABLE_HEADER = "| field | kind | required | max | values | meaning |"
TABLE_RULE = "| --- | --- | --- | --- | --- | --- |"
KINDS = {"str", "int", "f64", "bool", "id", "map", "array"}


class Failure(Exception):
    pass


class Map(list):
    """A msgpack or JSON map as its (key, value) pairs, in order (duplicates stay visible)."""


def parse_document(path):
    """Returns [(type, [field dicts])] from the '## Message types' section, strictly."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    types = []
    in_types = False
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("## "):
            in_types = line == "## Message types"
        elif in_types and re.fullmatch(r"### `[a-z_.]+`", line):
            name = line[5:-1]
            i += 1
            while i < len(lines) and not lines[i].startswith("|") and not lines[i].startswith("#"):
                i += 1
            if i + 1 >= len(lines) or lines[i] != TABLE_HEADER or lines[i + 1] != TABLE_RULE:
                raise Failure("%s: table header or rule is not in the strict format" % name)
            i += 2
            fields = []
            while i < len(lines) and lines[i].startswith("|"):
                cells = [c.strip() for c in lines[i].strip().split("|")[1:-1]]
                if len(cells) != 6:
                    raise Failure("%s: row needs 6 cells: %s" % (name, lines[i]))
                fname, kind, required, maxlen, values, meaning = cells
                if not re.fullmatch(r"`[a-z_]+`", fname) or kind not in KINDS \
                        or required not in ("yes", "no") or not meaning \
                        or not re.fullmatch(r"\d*", maxlen) \
                        or not re.fullmatch(r"(`[a-z_]+`( `[a-z_]+`)*)?", values):
                    raise Failure("%s: malformed row: %s" % (name, lines[i]))
                if (kind == "str") != (maxlen != ""):
                    raise Failure("%s: str fields, and only they, have a max: %s" % (name, lines[i]))
                fields.append({
                    "name": fname[1:-1], "kind": kind, "required": required == "yes",
                    "max": int(maxlen) if maxlen else None,
                    "values": [v[1:-1] for v in values.split()] if values else None,
                })
                i += 1
            types.append((name, fields))
            continue
        i += 1
    if not types:
        raise Failure("no message types found in %s" % path)
    return types


def pairs_hook(pairs):
    keys = [k for k, _ in pairs]
    for k in keys:
        if not isinstance(k, str):
            raise Failure("map key %r is not a str" % (k,))
    if len(set(keys)) != len(keys):
        raise Failure("duplicate key in %r" % (keys,))
    return Map(pairs)


def ext_hook(code, data):
    raise Failure("ext type %d in a golden frame" % code)


def decode(data):
    return msgpack.unpackb(data, raw=False, strict_map_key=True, object_pairs_hook=pairs_hook,
                           ext_hook=ext_hook)


def is_int(x):
    return isinstance(x, int) and not isinstance(x, bool)


def check_id(value, where, nil_ok):
    if value is None and nil_ok:
        return
    if not isinstance(value, bytes) or len(value) != 16:
        raise Failure("%s: expected bin 16, got %r" % (where, value))
    if value == bytes(16):
        raise Failure("%s: the nil UUID" % where)


def check_body(body, fields, where):
    if not isinstance(body, Map):
        raise Failure("%s: body is not a map" % where)
    values = dict(body)
    for f in fields:
        name = f["name"]
        v = values.get(name)
        at = "%s.%s" % (where, name)
        if v is None:
            if f["required"]:
                raise Failure("%s: required field missing" % at)
            continue
        kind = f["kind"]
        if kind == "str":
            if not isinstance(v, str):
                raise Failure("%s: expected str" % at)
            if len(v.encode("utf-8")) > f["max"] or "\0" in v:
                raise Failure("%s: longer than %d bytes or holds NUL" % (at, f["max"]))
            if f["values"] and v not in f["values"]:
                raise Failure("%s: %r not in %s" % (at, v, f["values"]))
        elif kind == "int":
            if not is_int(v) or not -2**63 <= v < 2**63:
                raise Failure("%s: expected int" % at)
        elif kind == "f64":
            if not (is_int(v) or isinstance(v, float)) or (isinstance(v, float) and not math.isfinite(v)):
                raise Failure("%s: expected a finite f64" % at)
        elif kind == "bool":
            if not isinstance(v, bool):
                raise Failure("%s: expected bool" % at)
        elif kind == "id":
            check_id(v, at, False)
        elif kind == "map":
            if not isinstance(v, Map):
                raise Failure("%s: expected map" % at)
        elif kind == "array":
            if not isinstance(v, list) or isinstance(v, Map):
                raise Failure("%s: expected array" % at)


def check_header(env, type_name):
    keys = [k for k, _ in env]
    if keys != HEADER_KEYS:
        raise Failure("keys are %s, expected %s in that order" % (keys, HEADER_KEYS))
    h = dict(env)
    if h["v"] != 1 or not is_int(h["v"]):
        raise Failure("v is %r" % (h["v"],))
    if h["type"] != type_name:
        raise Failure("type is %r" % (h["type"],))
    check_id(h["id"], "id", False)
    check_id(h["corr"], "corr", True)
    check_id(h["cause"], "cause", True)
    if not is_int(h["ts"]) or not 0 < h["ts"] < 2**63:
        raise Failure("ts is %r" % (h["ts"],))
    src = h["src"]
    if not isinstance(src, str) or not 0 < len(src) < 64 or not all(0x20 <= ord(c) < 0x7f for c in src):
        raise Failure("src is %r" % (src,))
    if not is_int(h["seq"]) or h["seq"] < 0:
        raise Failure("seq is %r" % (h["seq"],))
    return h


def same(value, expected, where):
    """The decoded msgpack value equals the JSON value, types included."""
    if isinstance(value, Map):
        if not isinstance(expected, Map):
            raise Failure("%s: a map where the JSON has %r" % (where, expected))
        if [k for k, _ in value] != [k for k, _ in expected]:
            raise Failure("%s: keys %s differ from the JSON's %s"
                          % (where, [k for k, _ in value], [k for k, _ in expected]))
        for (k, v), (_, e) in zip(value, expected):
            same(v, e, "%s.%s" % (where, k))
        return
    if isinstance(value, list):
        if not isinstance(expected, list) or isinstance(expected, Map) or len(value) != len(expected):
            raise Failure("%s: array differs from the JSON's %r" % (where, expected))
        for n, (v, e) in enumerate(zip(value, expected)):
            same(v, e, "%s[%d]" % (where, n))
        return
    if isinstance(value, bytes):
        if len(value) != 16 or str(uuid.UUID(bytes=value)) != expected:
            raise Failure("%s: id %s differs from %r" % (where, value.hex(), expected))
        return
    if type(value) is not type(expected) or value != expected:
        raise Failure("%s: %r (%s) differs from the JSON's %r (%s)"
                      % (where, value, type(value).__name__, expected, type(expected).__name__))


def to_plain(value):
    """Maps back to dicts (which keep their order), for msgpack.packb."""
    if isinstance(value, Map):
        return {k: to_plain(v) for k, v in value}
    if isinstance(value, list):
        return [to_plain(v) for v in value]
    return value


def from_json(expected, fields):
    """The JSON envelope as a client would build it: ids as 16 bytes, the rest as is."""
    id_fields = {f["name"] for f in fields if f["kind"] == "id"}
    env = {}
    for k, v in expected:
        if k in ("id", "corr", "cause"):
            env[k] = uuid.UUID(v).bytes if v is not None else None
        elif k == "body":
            env[k] = {bk: (uuid.UUID(bv).bytes if bk in id_fields and bv is not None else to_plain(bv))
                      for bk, bv in v}
        else:
            env[k] = v
    return env


def main():
    if len(sys.argv) != 3:
        print("usage: golden_check.py GOLDEN_DIR ENVELOPE_MD", file=sys.stderr)
        return 2
    golden, doc = sys.argv[1], sys.argv[2]
    results = []

    def run(desc, fn):
        try:
            fn()
            results.append((True, desc, None))
        except Failure as e:
            results.append((False, desc, str(e)))
        except Exception as e:          # a decoding error from msgpack, a missing file...
            results.append((False, desc, "%s: %s" % (type(e).__name__, e)))

    try:
        types = parse_document(doc)
        results.append((True, "envelope.md field tables parse", None))
    except Failure as e:
        types = []
        results.append((False, "envelope.md field tables parse", str(e)))

    names = {t for t, _ in types}

    def no_strays():
        for f in sorted(os.listdir(golden)):
            if f == "README.md" or f.startswith("."):
                continue
            stem, ext = os.path.splitext(f)
            if ext not in (".msgpack", ".json") or stem not in names:
                raise Failure("stray file %s" % f)
    run("golden folder holds only documented types", no_strays)

    for type_name, fields in types:
        path = os.path.join(golden, type_name)
        state = {}

        def load():
            with open(path + ".msgpack", "rb") as f:
                state["data"] = f.read()
            with open(path + ".json", encoding="utf-8") as f:
                state["json"] = json.load(f, object_pairs_hook=Map)
            state["env"] = decode(state["data"])

        def rules():
            h = check_header(state["env"], type_name)
            check_body(h["body"], fields, type_name)

        def matches_json():
            same(state["env"], state["json"], type_name)

        def repacks():
            if msgpack.packb(to_plain(state["env"]), use_bin_type=True) != state["data"]:
                raise Failure("re-packing the decoded envelope changes its bytes")
            built = msgpack.packb(from_json(state["json"], fields), use_bin_type=True)
            if built != state["data"]:
                raise Failure("packing the JSON does not give the golden bytes")

        run("%s: decodes strictly" % type_name, load)
        for desc, fn in (("header and body follow the document", rules),
                         ("matches its .json", matches_json),
                         ("re-packs byte for byte, from msgpack and from JSON", repacks)):
            if "env" in state:
                run("%s: %s" % (type_name, desc), fn)
            else:
                results.append((False, "%s: %s" % (type_name, desc), "not decoded"))

    print("1..%d" % len(results))
    for n, (ok, desc, why) in enumerate(results, 1):
        print("%s %d - %s" % ("ok" if ok else "not ok", n, desc))
        if why:
            print("# %s" % why)
    return 0 if all(ok for ok, _, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
