"""Keep the Colab badge and the pinned install cell at the top of every chapter notebook in step with the project.

    python tools/colab.py          write or refresh the two cells in nbs/[0-9]*.ipynb
    python tools/colab.py --check  exit 1 if any notebook's cells differ from what this script would write

The install cell pins the package version from playbook_lib/__init__.py and the --no-deps packages from
tools/setup.sh and tools/requirements-nodeps.txt, so a reader on Colab gets what `bash tools/setup.sh dev` installs.
"""
import json, re, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BADGE_MARK, INSTALL_MARK = "colab-badge.svg", "tools/colab.py"

def project():
    "(version, repository URL, no-deps requirement lines) read from the project's own files."
    version = re.search(r'__version__\s*=\s*"([^"]+)"', (ROOT/"playbook_lib"/"__init__.py").read_text()).group(1)
    url = re.search(r'Repository\s*=\s*"([^"]+)"', (ROOT/"pyproject.toml").read_text()).group(1).rstrip("/")
    nodeps = re.findall(r'--no-deps "([^"]+)"', (ROOT/"tools"/"setup.sh").read_text())
    req = ROOT/"tools"/"requirements-nodeps.txt"
    nodeps += [l.strip() for l in req.read_text().splitlines() if l.strip() and not l.startswith("#")]
    return version, url, nodeps

CHAPTER_EXTRAS = {"05c_gguf.ipynb": "gguf"}   # chapters that need an optional extra of pyproject.toml on top of [dev]

def extra(name):
    "The requirement lines of one optional extra in pyproject.toml (none for None)."
    if name is None: return []
    body = re.search(rf'^{name} = \[(.*?)\]\s*$', (ROOT/"pyproject.toml").read_text(), re.M | re.S).group(1)
    return re.findall(r'"([^"]+)"', body)

def cells(nb_name):
    "The badge (markdown) and install (code) cells for one notebook."
    version, url, nodeps = project()
    gh = url.replace("https://github.com/", "")
    badge = (f"[![在 Colab 中打开](https://colab.research.google.com/assets/{BADGE_MARK})]"
             f"(https://colab.research.google.com/github/{gh}/blob/main/nbs/{nb_name})")
    install = "\n".join([
        "#| eval: false",
        f"# 在 Colab 或新机器上先安装本书的库 playbook-lib {version}（由 {INSTALL_MARK} 按 pyproject.toml 生成，别手改）",
        f'!pip install -q "playbook-lib[dev] @ git+{url}@v{version}"',
        "!pip install -q --no-deps " + " ".join(f'"{r}"' for r in nodeps)]
        + [f'!pip install -q "{r}"   # 这一章要用；PyPI 上只有源码包，要编译几分钟' for r in extra(CHAPTER_EXTRAS.get(nb_name))])
    return ({"cell_type": "markdown", "metadata": {}, "source": badge.splitlines(keepends=True)},
            {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": install.splitlines(keepends=True)})

def chapters():
    return sorted(p for p in (ROOT/"nbs").glob("[0-9]*.ipynb"))

def is_ours(c):
    src = "".join(c["source"])
    return (c["cell_type"] == "markdown" and BADGE_MARK in src) or (c["cell_type"] == "code" and INSTALL_MARK in src)

def updated(nb, name):
    "The notebook with exactly one badge + install pair right after its title cell."
    rest = [c for c in nb["cells"] if not is_ours(c)]
    badge, install = cells(name)
    return {**nb, "cells": rest[:1] + [badge, install] + rest[1:]}

def same(a, b):
    key = lambda nb: [(c["cell_type"], "".join(c["source"])) for c in nb["cells"]]
    return key(a) == key(b)

def main(argv):
    check, stale = "--check" in argv, []
    for p in chapters():
        nb = json.loads(p.read_text(encoding="utf-8"))
        new = updated(nb, p.name)
        if same(nb, new): continue
        stale.append(p.name)
        if not check:
            tmp = p.with_suffix(".tmp")
            tmp.write_text(json.dumps(new, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
            tmp.replace(p)
    if check and stale:
        print(f"Colab 安装单元与 pyproject.toml 不同步：{', '.join(stale)}。运行 python tools/colab.py 后提交。", file=sys.stderr)
        return 1
    print(("已更新：" + ", ".join(stale)) if stale and not check else "Colab 徽章与安装单元已同步")
    return 0

if __name__ == "__main__": sys.exit(main(sys.argv[1:]))
