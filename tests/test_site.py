"The site: every chapter in the sidebar, a Colab badge and a pinned install cell in step with the project, links that resolve."
import json, re, subprocess, sys
from pathlib import Path

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
