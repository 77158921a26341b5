"The site: every chapter in the sidebar, a Colab badge and a pinned install cell in step with the project, links that resolve."
import json, re, subprocess, sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT/"nbs"
sys.path.insert(0, str(ROOT/"tools"))
import colab  # noqa: E402

def sidebar_hrefs(node):
    if isinstance(node, dict):
        return ([node["href"]] if "href" in node else []) + [h for v in node.values() for h in sidebar_hrefs(v)]
    if isinstance(node, list): return [h for v in node for h in sidebar_hrefs(v)]
    return []

def test_sidebar_lists_every_notebook_in_reading_order():
    hrefs = sidebar_hrefs(yaml.safe_load((NBS/"sidebar.yml").read_text()))
    assert sorted(hrefs) == sorted(p.name for p in NBS.glob("*.ipynb"))
    chapters = [h for h in hrefs if re.match(r"0\d_", h)]
    assert chapters == sorted(chapters) and hrefs[0] == "index.ipynb"

def test_install_cell_matches_the_project():
    import playbook_lib
    setup = (ROOT/"tools"/"setup.sh").read_text()
    for p in colab.chapters():
        cells = json.loads(p.read_text())["cells"]
        badge, install = ("".join(c["source"]) for c in cells[1:3])
        assert "colab-badge.svg" in badge and f"/nbs/{p.name})" in badge, p.name
        assert install.startswith("#| eval: false"), p.name
        assert f'@v{playbook_lib.__version__}"' in install, p.name
        for pin in re.findall(r'--no-deps "([^"]+)"', setup): assert f'"{pin}"' in install, (p.name, pin)
        for req in colab.extra(colab.CHAPTER_EXTRAS.get(p.name)): assert f'"{req}"' in install, (p.name, req)
    # chapter 5c's install pin, pyproject's gguf extra and the version tools/llama_cpp.sh builds are one version
    from playbook_lib.gguf import LLAMA_CPP_VERSION
    assert colab.extra("gguf") == [f"llama-cpp-python[server]=={LLAMA_CPP_VERSION}"]
    assert subprocess.run([sys.executable, str(ROOT/"tools"/"colab.py"), "--check"]).returncode == 0

def test_check_mode_catches_a_stale_cell(tmp_path, monkeypatch):
    nb = json.loads((NBS/"01_decide.ipynb").read_text())
    nb["cells"][2]["source"] = ["#| eval: false\n", '!pip install -q "playbook-lib==0.0.1"\n']
    (tmp_path/"nbs").mkdir(); (tmp_path/"nbs"/"01_decide.ipynb").write_text(json.dumps(nb))
    monkeypatch.setattr(colab, "chapters", lambda: [tmp_path/"nbs"/"01_decide.ipynb"])
    assert colab.main(["--check"]) == 1
    assert colab.main([]) == 0 and colab.main(["--check"]) == 0   # rewriting fixes it, once

def test_chapter_links_resolve():
    for p in NBS.glob("*.ipynb"):
        text = "".join("".join(c["source"]) for c in json.loads(p.read_text())["cells"] if c["cell_type"] == "markdown")
        for target in re.findall(r"\]\(([0-9a-z_]+\.ipynb)(?:#[^)]*)?\)", text):
            assert (NBS/target).exists(), f"{p.name} links to missing {target}"

import check_site, diagrams  # noqa: E402

def _nb(*cells):
    return {"cells": list(cells), "metadata": {}, "nbformat": 4, "nbformat_minor": 5}

def _md(text): return {"cell_type": "markdown", "metadata": {}, "source": text}

def _code(source, *outputs): return {"cell_type": "code", "metadata": {}, "source": source, "outputs": list(outputs), "execution_count": 1}

def _stream(text, name="stdout"): return {"output_type": "stream", "name": name, "text": text}

def _display(mime, text): return {"output_type": "display_data", "metadata": {}, "data": {mime: text}}

CLEAN = [_md("# 标题\n\n## 第一节：要不要调？\n\n见[下一节](#第二节)与[附录](other.ipynb#模型档位)。\n\n## 第二节\n\n![图](pic.png)"),
         _code("#| export\ndef f(): pass"),
         _code("import json"),
         _code("print(json.dumps({'a': 1}))", _stream('{"a": 1}\n')),
         _code("Markdown(table)", _display("text/markdown", "| a | b |\n|---|---|\n| 1 | 2 |"))]

PLANTED = {   # one defect of each kind, as a reader met it on the site
    "mermaid-output": _code("show_flowchart()", _display("text/markdown", "```{mermaid}\nflowchart TD\n  a --> b\n```")),
    "abs-path": _code("print(cfg.output_dir)", _stream("/root/.cache/playbook_lib/specialist-cpu\n")),
    "missing-image": _code("Markdown(report)", _display("text/markdown", "报告：\n\n![](scores.png)")),
    "stderr": _code("run()", _stream("Failed to load CPU gemm_4bit_forward from kernels-community\n", "stderr")),
    "ansi": _code("view", {"output_type": "execute_result", "metadata": {}, "execution_count": 1,
                           "data": {"text/html": "<span>ok</span>", "text/plain": "\x1b[2m<|im_start|>\x1b[0m"}}),
    "raw-table": _code("print(report_table)", _stream("| 裁判 | 胜率 |\n|---|---|\n| oracle | 99% |\n")),
    "broken-link": _md("见[第九章](09_nope.ipynb)和[这一节](#没有这一节)。"),
    "badge": _md("[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
                 "(https://colab.research.google.com/github/ft-playbook/specialist-playbook/blob/main/nbs/07_gone.ipynb)"),
    "long-output": _code("print(card)", _stream("".join(f"line {i}\n" for i in range(80)))),
    "doc-exec": _code("from IPython.display import Image\nImage(str(Path(spec.output_dir)/'loss.png'))"),
}

def _write(tmp_path, cells):
    (tmp_path/"pic.png").write_bytes(b"\x89PNG")
    (tmp_path/"other.ipynb").write_text(json.dumps(_nb(_md("## 模型档位\n\n正文"))))
    p = tmp_path/"00_page.ipynb"; p.write_text(json.dumps(_nb(*cells)), encoding="utf-8")
    return p

def test_site_check_passes_a_clean_page(tmp_path):
    assert check_site.check_notebook(_write(tmp_path, CLEAN)) == []

@pytest.mark.parametrize("kind", sorted(PLANTED))
def test_site_check_catches_each_defect_kind(tmp_path, kind):
    found = check_site.check_notebook(_write(tmp_path, CLEAN + [PLANTED[kind]]))
    assert {k for _, k, _ in found} == {kind}, found
    assert all(i == len(CLEAN) for i, _, _ in found)   # the finding names the planted cell
    assert check_site.main([str(tmp_path/"00_page.ipynb")]) == 1 and check_site.main(["--skip", kind, str(tmp_path/"00_page.ipynb")]) == 0

def test_anchor_ids_follow_pandoc():
    assert check_site.anchor_id("第一节：要不要调？") == "第一节要不要调"
    assert check_site.anchor_id("2. LoRA 与 `QLoRA` 的取舍") == "lora-与-qlora-的取舍"
    assert check_site.anchor_id("一页纸清单 {#checklist}") == "一页纸清单"

def test_generated_diagrams_are_current_and_a_stale_one_is_caught(tmp_path):
    assert diagrams.main(["--check"]) == 0
    nb = json.loads((NBS/"01_decide.ipynb").read_text())
    [i] = [k for k, c in enumerate(nb["cells"]) if "".join(c["source"]).startswith("<!-- generated by tools/diagrams.py from: mermaid() -->")]
    nb["cells"][i]["source"] = ["<!-- generated by tools/diagrams.py from: mermaid() -->\n", "```{mermaid}\n", "flowchart TD\n  old --> tree\n", "```"]
    p = tmp_path/"01_decide.ipynb"; p.write_text(json.dumps(nb, ensure_ascii=False))
    assert diagrams.main(["--check", str(p)]) == 1
    assert diagrams.main([str(p)]) == 0 and diagrams.main(["--check", str(p)]) == 0   # regenerating fixes it
    from playbook_lib.decide import mermaid
    assert mermaid() in "".join(json.loads(p.read_text())["cells"][i]["source"])
