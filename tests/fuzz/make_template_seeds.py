#!/usr/bin/env python3
"""Writes corpus/fuzz_templates/ seeds in FuzzedDataProvider's layout: strings from the
front, each ended by a backslash and one more byte; small integers from the back,
last byte first (see fuzz_templates.cpp for the order they are read in)."""
import os

def s(text):
    return text.replace("\\", "\\\\").encode() + b"\\ "

def seed(name, ns, shared, fields, categories, match, params, extra, method, path, query, headers, body):
    front = s(name) + s(ns)
    front += b"".join(s(f) for f in fields)
    front += b"".join(s(c) for c in categories)
    front += s(match) + b"".join(s(p) for p in params) + s(extra[0]) + s(extra[1])
    front += s(method) + s(path) + s(query)
    front += b"".join(s(h) for pair in headers for h in pair)
    front += body.encode()
    tail = [1 if shared else 0, len(fields), len(categories), len(headers)]
    return front + bytes(reversed(tail))

here = os.path.dirname(os.path.abspath(__file__))
out = os.path.join(here, "corpus", "fuzz_templates")
os.makedirs(out, exist_ok=True)
seeds = {
    "lookup": seed("lookup", "momentry", False, ["query.uuid"], ["video_meta", "video:{query.uuid}"],
                   "GET /api/v1/lookup", [], ("x", "y"), "GET", "/api/v1/lookup", "uuid=42&uuid=7",
                   [("Authorization", "Bearer t")], ""),
    "search_body": seed("search", "momentry_dev", True, ["body", "header.Accept-Language"],
                        ["search", "lang:{header.accept-language}:{body}"], "POST /api/v1/search", [],
                        ("a", "b"), "POST", "/api/v1/search", "",
                        [("Accept-Language", "de"), ("Content-Type", "application/json")],
                        '{"q":"cats","k":10,"f":[1.50,true,null]}'),
    "path_params": seed("frames", "ns", False, ["path.uuid", "path.n", "method"],
                        ["video:{path.uuid}", "f:{path.uuid}:{path.n}:{query.size}{method}"],
                        "GET /v/{uuid}/frames/{n}/*", ["abc", "12"], ("uuid", "dup"), "HEAD",
                        "/v/abc/frames/12/x", "size=a&size=b&size=%41+b", [], ""),
    "default_key": seed("videos", "m", False, [], ["videos", "{query.page}-{query.limit}"],
                        "GET /api/v1/videos", [], ("", ""), "GET", "/api/v1/videos/",
                        "limit=20&page=2&&=&x", [("Cookie", "a=1"), ("cookie", "b=2")], ""),
    "bad_templates": seed("r", "n", False, ["query.", "header", "path.{x}"], ["{query.uuid", "*", "", "a}{b"],
                          "GET /a/{x}/{x}", [], ("", ""), "GET", "/", "", [], "not json {"),
}
for name, data in seeds.items():
    with open(os.path.join(out, name + ".bin"), "wb") as f:
        f.write(data)
