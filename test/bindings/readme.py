"""Make the README's bindings section from the programs the tests run.

test/bindings/readme.md.in is the section's text; in it

  {{code LANG FILE}}   becomes a fenced LANG block of FILE's lines between
                       its [readme] and [/readme] marker comments (dedented)
  {{line FILE}}        becomes, as inline code, the first of those lines
                       that names ./persistmap, without a trailing comment

FILE is relative to test/bindings/ (or the repository, for test/...). So
the load code in the README is the load code the tests run.

  /usr/bin/python3 test/bindings/readme.py [-o OUT]     write the section
  /usr/bin/python3 test/bindings/readme.py --check README.md
      fail if README.md has the section but any snippet differs from it
"""
import argparse
import os
import re
import sys
import textwrap

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
TEMPLATE = os.path.join(HERE, "readme.md.in")
HEADING = "## Use it from your language"

BEGIN = re.compile(r"^\s*(#|//|--|/\*)\s*\[readme\]\s*(\*/)?\s*$")
END = re.compile(r"^\s*(#|//|--|/\*)\s*\[/readme\]\s*(\*/)?\s*$")
TRAILING_COMMENT = re.compile(r"\s+(#|//|--)\s.*$")


def snippet(rel):
    """The dedented lines between the markers of one file."""
    path = os.path.join(REPO, rel) if rel.startswith("test/") else os.path.join(HERE, rel)
    with open(path) as f:
        lines = f.read().splitlines()
    starts = [i for i, line in enumerate(lines) if BEGIN.match(line)]
    ends = [i for i, line in enumerate(lines) if END.match(line)]
    if len(starts) != 1 or len(ends) != 1 or ends[0] <= starts[0]:
        raise SystemExit(f"{rel}: needs exactly one [readme] ... [/readme] pair")
    return textwrap.dedent("\n".join(lines[starts[0] + 1:ends[0]])).strip("\n")


def load_line(rel):
    for line in snippet(rel).splitlines():
        if "./persistmap" in line:
            return "`" + TRAILING_COMMENT.sub("", line.strip()) + "`"
    raise SystemExit(f"{rel}: no line of its snippet names ./persistmap")


def render():
    with open(TEMPLATE) as f:
        text = f.read()
    text = re.sub(r"\{\{code (\S+) (\S+)\}\}",
                  lambda m: f"```{m.group(1)}\n{snippet(m.group(2))}\n```", text)
    text = re.sub(r"\{\{line (\S+)\}\}", lambda m: load_line(m.group(1)), text)
    if "{{" in text:
        raise SystemExit("readme.md.in: an unknown {{...}} placeholder is left")
    return text


def code_blocks(text):
    return re.findall(r"^```[a-z]*\n(.*?)^```", text, re.M | re.S)


def check(readme):
    with open(readme) as f:
        text = f.read()
    if HEADING not in text:
        print(f"{readme}: no '{HEADING}' section yet; nothing to check")
        return 0
    section = text[text.index(HEADING):]
    stale = [b for b in code_blocks(render()) if b not in section]
    for b in stale:
        print(f"{readme}: differs from the tests' code:\n{b}", file=sys.stderr)
    if stale:
        print("regenerate it: /usr/bin/python3 test/bindings/readme.py", file=sys.stderr)
    return 1 if stale else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--out", default="/tmp/bindings_readme.md")
    ap.add_argument("--check", metavar="README")
    args = ap.parse_args()
    if args.check:
        sys.exit(check(args.check))
    with open(args.out, "w") as f:
        f.write(render())
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
