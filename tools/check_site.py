"""Check the notebooks for what breaks or clutters the rendered site, without Quarto.

    python tools/check_site.py                 every notebook under nbs/
    python tools/check_site.py nbs/01_decide.ipynb ...
    python tools/check_site.py --heights       also print each page's estimated height (see `page_height`)

Reads the committed notebooks (what `nbdev-docs` renders; outputs are never re-executed) and exits 1 listing every
finding as `notebook:cell: kind: detail`. Each kind is a defect a reader met on the rendered site:

- mermaid-output   mermaid source in a code cell's output. Quarto draws a diagram reliably only from a markdown
                   ```{mermaid} cell: once a `show_doc` block (`---` rule) is earlier on the page, a code cell's
                   mermaid output is left as raw text (chapter 1's flowchart, Quarto 1.7.34). Generated diagrams are
                   written into markdown cells by `tools/diagrams.py`.
- abs-path         a machine path (/root, /tmp, /home, /work, a venv, site-packages) or a loopback port in an output
- missing-image    an image referenced from a cell or an output that is not next to the notebook
- stderr           a stderr stream in a committed output (warnings, kernel notices, progress-bar fragments)
- ansi             an ANSI escape in an output (terminal colours render as garbage on the web)
- raw-table        a Markdown table inside a stream, plain-text or HTML output (shown as pipes, not a table)
- broken-link      a link to a notebook that does not exist, or to an anchor the target page does not have
- badge            a Colab badge pointing at a notebook that does not exist
- doc-exec         a code cell that imports something and also does other work. `nbdev-docs` executes every cell
                   with an import (to render `show_doc`) in a fresh kernel: such a cell trains, downloads or fails
                   at site-build time (02_train's `Image(... spec ...)` cell stopped the whole build). Put imports in
                   a cell of their own. The `#| hide` setup cell at the top of a chapter is exempt: it is cheap.
- long-output      an output longer than a screen (`MAX_LINES`) that is not folded (`#| output: false`, or a
                   `<details>` block)
"""
import argparse, ast, json, re, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NBS = ROOT/"nbs"
MAX_LINES = 45

MERMAID = re.compile(r"(?m)^\s*(```\s*\{?mermaid\}?|(flowchart|graph)\s+(TD|TB|LR|RL|BT)\b|sequenceDiagram\b|stateDiagram|classDiagram\b|gantt\b)")
ABS_PATH = re.compile(r"(?<![\w.~])(/(root|tmp|home|work|Users|var/folders|opt/conda)/[^\s'\"`)<>，。；：]*"
                      r"|[\w./-]*(\.venv|site-packages|dist-packages)/[^\s'\"`)<>]*"
                      r"|\b(127\.0\.0\.1|localhost|0\.0\.0\.0):\d{2,5}\b)")
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
MD_TABLE = re.compile(r"(?m)^[ \t]*\|.*\|[ \t]*\n[ \t]*\|?[ \t]*:?-{3,}:?[ \t]*(\|[ \t]*:?-{3,}:?[ \t]*)+\|?[ \t]*$")
MD_IMAGE = re.compile(r"!\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_IMAGE = re.compile(r"<img\b[^>]*?\bsrc\s*=\s*[\"']([^\"']+)[\"']", re.I)
MD_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(\s*<?([^)\s>]+)>?\s*\)")
BADGE = re.compile(r"colab\.research\.google\.com/github/[^/\s]+/[^/\s]+/blob/[^/\s]+/nbs/([\w.-]+\.ipynb)")
HEADING = re.compile(r"(?m)^#{1,6}\s+(.+?)\s*$")
EXPLICIT_ID = re.compile(r"\{[^}]*#([\w:.-]+)[^}]*\}|\bid\s*=\s*[\"']([^\"']+)[\"']")
DIRECTIVE = re.compile(r"^\s*#\|\s*([\w-]+)\s*:?\s*(.*)$")

def directives(cell):
    "The cell's `#| key: value` options (nbdev/Quarto), lower-cased keys."
    out = {}
    for line in "".join(cell.get("source", "")).splitlines():
        m = DIRECTIVE.match(line)
        if not m: break
        out[m[1].lower()] = m[2].strip()
    return out

def output_texts(o):
    "(mime, text) pairs a rendered page can show for one output; images are left out."
    if o.get("output_type") == "stream": return [("stream:" + o.get("name", "stdout"), "".join(o.get("text", "")))]
    if o.get("output_type") == "error": return [("error", "\n".join(o.get("traceback", [])))]
    data = o.get("data", {})
    for mime in ("text/markdown", "text/html", "text/latex", "text/plain"):   # what Quarto picks, in its order
        if mime in data: return [(mime, "".join(data[mime]))]
    return []

def anchor_id(heading):
    "Pandoc's auto identifier for a heading (the `auto_identifiers` extension Quarto uses), Unicode letters kept."
    t = re.sub(r"\{[^}]*\}\s*$", "", heading)                  # attributes are not part of the text
    t = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", t)            # links and images: their text
    t = re.sub(r"<[^>]+>|[*_`]", "", t)                          # inline HTML and emphasis marks
    t = "".join(ch for ch in t if ch.isalnum() or ch in "_-. \t\n")
    t = re.sub(r"\s+", "-", t.strip()).lower()
    t = re.sub(r"^[^a-z\u00c0-\uffff]+", "", t)                  # everything up to the first letter
    return t or "section"

def anchors(nb):
    "Every id a link can point at on this notebook's page: heading ids and explicit `{#id}` / `id=\"…\"`."
    ids = set()
    for c in nb["cells"]:
        texts = ["".join(c.get("source", ""))] if c["cell_type"] == "markdown" else []
        texts += [t for o in c.get("outputs", []) for mime, t in output_texts(o) if mime in ("text/markdown", "text/html")]
        for t in texts:
            t = re.sub(r"(?ms)^```.*?^```", "", t)             # headings inside code blocks are not headings
            for h in HEADING.findall(t):
                if m := re.search(r"\{#([\w:.-]+)", h): ids.add(m[1])
                else: ids.add(anchor_id(h))
            ids.update(a or b for a, b in EXPLICIT_ID.findall(t))
        if c["cell_type"] == "code" and (m := re.search(r"#\|\s*label:\s*(\S+)", "".join(c.get("source", "")))): ids.add(m[1])
    return ids

def rendered_lines(mime, text):
    "About how many lines an output takes on the page: text lines, or for HTML its rows, items and breaks."
    if mime == "text/html": return max(1, len(re.findall(r"<(tr|li|p|br|h\d|div)\b", text, re.I)))
    return text.rstrip("\n").count("\n") + 1

def doc_exec(cell, opts):
    "True if `nbdev-docs` would execute this cell (it imports something) and it does more than import."
    if opts.keys() & {"export", "exports", "exporti", "exec_doc", "hide"} or opts.get("eval") == "false": return False
    code = "\n".join(l for l in "".join(cell.get("source", "")).splitlines() if not l.lstrip().startswith(("!", "%")))
    try: tree = ast.parse(code)
    except SyntaxError: return False
    imports = (ast.Import, ast.ImportFrom)
    return any(isinstance(n, imports) for n in ast.walk(tree)) and not all(isinstance(n, imports) for n in tree.body)

def _local(src):
    return not re.match(r"^(https?:|data:|mailto:|#|//)", src)

def check_notebook(path, anchors_of=None):
    "Findings for one notebook: a list of (cell index, kind, detail)."
    path = Path(path); nb = json.loads(path.read_text(encoding="utf-8"))
    anchors_of = anchors_of if anchors_of is not None else {}
    def page_anchors(p):
        p = Path(p).resolve()
        if p not in anchors_of: anchors_of[p] = anchors(json.loads(p.read_text(encoding="utf-8"))) if p.exists() else None
        return anchors_of[p]
    found = []
    for i, c in enumerate(nb["cells"]):
        opts = directives(c)
        src = "".join(c.get("source", ""))
        if c["cell_type"] == "markdown":
            text = re.sub(r"(?ms)^```.*?^```", "", src)
            for s in MD_IMAGE.findall(text) + HTML_IMAGE.findall(text):
                if _local(s) and not (path.parent/s.split("#")[0]).exists(): found.append((i, "missing-image", s))
            for target in MD_LINK.findall(text):
                if not _local(target) and not target.startswith("#"): continue
                page, _, frag = target.partition("#")
                if page and not page.endswith(".ipynb"):
                    if not (path.parent/page).exists(): found.append((i, "broken-link", target))
                    continue
                ids = page_anchors(path.parent/page if page else path)
                if ids is None: found.append((i, "broken-link", f"{target}: no such notebook"))
                elif frag and frag not in ids: found.append((i, "broken-link", f"{target}: the page has no anchor #{frag}"))
            for nb_name in BADGE.findall(src):
                if not (NBS/nb_name).exists() and not (path.parent/nb_name).exists(): found.append((i, "badge", nb_name))
            continue
        if c["cell_type"] != "code" or opts.get("eval") == "false": continue
        if doc_exec(c, opts): found.append((i, "doc-exec", src.strip().splitlines()[0][:60] if src.strip() else ""))
        hidden_output = opts.get("output") == "false" or opts.get("include") == "false"
        for o in ([] if hidden_output else c.get("outputs", [])):
            every = [o.get("text", "")] + list(o.get("data", {}).values())   # every mime: a renderer may pick any
            if m := ANSI.search("".join("".join(v) if isinstance(v, list) else str(v) for v in every)):
                found.append((i, "ansi", repr(m[0])))
            for mime, t in output_texts(o):
                if mime == "stream:stderr": found.append((i, "stderr", t.strip().splitlines()[0][:100] if t.strip() else "(blank)"))
                if MERMAID.search(t): found.append((i, "mermaid-output", MERMAID.search(t)[0].strip()[:40]))
                for m in ABS_PATH.finditer(t): found.append((i, "abs-path", m[0][:80]))
                if mime != "text/markdown" and MD_TABLE.search(t): found.append((i, "raw-table", f"{mime}: {MD_TABLE.search(t)[0].splitlines()[0][:60]}"))
                if mime in ("text/markdown", "text/html"):
                    for s in MD_IMAGE.findall(t) + HTML_IMAGE.findall(t):
                        if _local(s) and not (path.parent/s).exists(): found.append((i, "missing-image", s))
                if mime == "text/markdown":   # a Markdown table inside an HTML block is not parsed either
                    for html in re.findall(r"(?s)<div\b[^>]*>(.*?)</div>", t):
                        if MD_TABLE.search(html): found.append((i, "raw-table", "Markdown table inside an HTML <div>"))
                lines = rendered_lines(mime, t)
                if lines > MAX_LINES and "<details" not in t and mime != "error":
                    found.append((i, "long-output", f"{lines} lines (> {MAX_LINES}): summarise it, or fold it"))
    return found

NBDEV_REMOVES_SOURCE = {"export", "exporti", "hide", "default_exp"}   # nbdev.processors._hide_dirs (rm_export); `exports` stays, folded open

def page_height(path):
    """A proxy for the rendered page's height in lines, (visible, folded): markdown lines, the code lines a reader
    sees (folded cells count one line for their summary), and output lines. Quarto is not installable here, so
    this compares pages before and after folding, not pixels."""
    nb = json.loads(Path(path).read_text(encoding="utf-8")); visible = folded = 0
    for c in nb["cells"]:
        src = "".join(c.get("source", "")); opts = directives(c)
        if c["cell_type"] == "markdown": visible += src.count("\n") + 2; continue
        if opts.get("include") == "false" or opts.get("eval") == "false" and opts.get("echo") == "false": continue
        code = [l for l in src.splitlines() if not DIRECTIVE.match(l)]
        if opts.get("echo") == "false" or opts.keys() & NBDEV_REMOVES_SOURCE: pass   # nbdev's rm_export: no source on the page
        elif opts.get("code-fold") in ("true", "show"): visible += 1; folded += len(code)
        else: visible += len(code) + 1
        if opts.get("output") != "false":
            for o in c.get("outputs", []):
                for mime, t in output_texts(o): visible += rendered_lines(mime, t)
    return visible, folded

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("notebooks", nargs="*"); p.add_argument("--heights", action="store_true")
    p.add_argument("--skip", action="append", default=[], metavar="KIND", help="leave out findings of this kind (repeatable)")
    a = p.parse_args(argv)
    paths = [Path(x) for x in a.notebooks] or sorted(NBS.glob("*.ipynb"))
    cache, total = {}, 0
    for path in paths:
        for i, kind, detail in check_notebook(path, cache):
            if kind in a.skip: continue
            print(f"{path.name}:cell {i}: {kind}: {detail}"); total += 1
        if a.heights:
            v, f = page_height(path); print(f"{path.name}: ~{v} lines visible, {f} code lines folded", file=sys.stderr)
    if total: print(f"\n{total} finding(s) in {len(paths)} notebook(s); see `python tools/check_site.py -h` for what each kind means", file=sys.stderr)
    else: print(f"site check: {len(paths)} notebook(s), nothing found", file=sys.stderr)
    return 1 if total else 0

if __name__ == "__main__": raise SystemExit(main())
