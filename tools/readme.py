"""Generate README.md from nbs/index.ipynb without Quarto (nbdev-readme needs Quarto, which is not installable here).

    python tools/readme.py          write README.md
    python tools/readme.py --check  exit 1 if README.md is out of date
"""
import json, re, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DIRECTIVE = re.compile(r"^\s*#\|\s*(.*)$")

def _callouts(md):
    "Quarto callouts -> GitHub blockquotes; {mermaid} fences -> mermaid fences."
    out, in_callout = [], False
    for line in md.splitlines():
        if m := re.match(r"^:::\s*\{\.callout-(\w+)[^}]*\}", line):
            in_callout = True; out.append(f"> **{ {'note': '说明', 'tip': '提示', 'warning': '注意', 'important': '重要', 'caution': '小心'}.get(m[1], m[1]) }**"); continue
        if in_callout and line.strip() == ":::": in_callout = False; continue
        line = line.replace("```{mermaid}", "```mermaid")
        out.append(("> " + line) if in_callout else line)
    return "\n".join(out)

def _outputs(cell):
    parts = []
    for o in cell.get("outputs", []):
        data = o.get("data", {})
        if "text/markdown" in data: parts.append("".join(data["text/markdown"]))
        elif o.get("output_type") == "stream": parts.append("```\n" + "".join(o["text"]).rstrip() + "\n```")
        elif "text/plain" in data: parts.append("```\n" + "".join(data["text/plain"]).rstrip() + "\n```")
    return parts

def render(nb_path=ROOT/"nbs"/"index.ipynb"):
    nb = json.loads(Path(nb_path).read_text(encoding="utf-8"))
    chunks = ["<!-- 本文件由 tools/readme.py 从 nbs/index.ipynb 生成，请勿直接编辑 -->"]
    for i, c in enumerate(nb["cells"]):
        src = "".join(c["source"])
        if c["cell_type"] == "markdown":
            if i == 0:  # title cell: H1 + summary
                chunks.append(src)
            else: chunks.append(_callouts(src))
            continue
        lines = src.splitlines()
        dirs = [m[1].strip() for l in lines if (m := DIRECTIVE.match(l))]
        if any(d.startswith(("hide", "default_exp")) for d in dirs): continue
        code = "\n".join(l for l in lines if not DIRECTIVE.match(l)).strip()
        if code and not any(d.startswith("echo: false") for d in dirs): chunks.append("```python\n" + code + "\n```")
        chunks += _outputs(c)
    return "\n\n".join(x.strip("\n") for x in chunks if x.strip()) + "\n"

if __name__ == "__main__":
    text, readme = render(), ROOT/"README.md"
    if "--check" in sys.argv:
        if not readme.exists() or readme.read_text(encoding="utf-8") != text:
            sys.exit("README.md is out of date: run `python tools/readme.py` (it is generated from nbs/index.ipynb)")
        print("README.md is up to date")
    else:
        tmp = readme.with_suffix(".md.tmp"); tmp.write_text(text, encoding="utf-8"); tmp.replace(readme)
        print(f"wrote {readme}")
