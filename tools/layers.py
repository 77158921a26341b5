#!/usr/bin/env python
"""The library's layering, measured from its source (no imports): which playbook_lib modules import which (at the top and
inside functions), import cycles, private third-party internals used outside `_compat`, and the notebook figures issue 29
asks for (median exported cell lines, public functions exercised on their own page).

    python tools/layers.py           # print the figures
    python tools/layers.py --check   # exit 1 if a module imports upward (see LAYERS) or a cycle exists

tests/test_layers.py runs the same checks."""
from __future__ import annotations
import ast, json, re, statistics, sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG, NBS = ROOT/"playbook_lib", ROOT/"nbs"

# Import only downward: a module may import modules of a lower rank (never its own rank or above). `cli` is the registry
# near the bottom: it dispatches by module *name* (importlib), so every chapter's `cli_*` can use its error printer.
LAYERS = [
    ("facts", "io", "_compat"),      # appendix G, E, F: data and stdlib only on import; the third-party seams
    ("cli", "tickets"),              # appendix C: the command registry; appendix B: the running example's data
    ("models",),                     # tiers, cache, loading (appendix A)
    ("decide", "templates"),         # chapter 1; chapter 3a
    ("data", "plan"),                # chapter 3; chapter 2a
    ("trainer",),                    # chapter 2b: the transformers/TRL subclasses, imported by train_sft when it starts
    ("train",),                      # chapter 2
    ("judge",),                      # chapter 4
    ("golden",),                     # chapter 4b
    ("merge",),                      # chapter 5
    ("serve",),                      # chapter 5b
    ("gguf",),                       # chapter 5c
    ("pipeline",),                   # chapter 6
]
RANK = {m: i for i, ms in enumerate(LAYERS) for m in ms}

def modules(pkg=PKG): return sorted(p.stem for p in pkg.glob("*.py") if not p.stem.startswith("__") and p.stem != "_modidx")

def _targets(node, mods):
    "playbook_lib modules an import statement names."
    if isinstance(node, ast.ImportFrom):
        if node.level: names = [node.module] if node.module else [a.name for a in node.names]
        elif node.module == "playbook_lib": names = [a.name for a in node.names]
        elif node.module and node.module.startswith("playbook_lib."): names = [node.module.split(".")[1]]
        else: names = []
    else: names = [a.name.split(".")[1] for a in node.names if a.name.startswith("playbook_lib.")]
    return [n.split(".")[0] for n in names if n and n.split(".")[0] in mods]

def imports(pkg=PKG):
    "[(module, imported module, line, inside a function?)] for every import of one playbook_lib module by another."
    mods, out = set(modules(pkg)), []
    for m in sorted(mods):
        tree = ast.parse((pkg/f"{m}.py").read_text())
        inner = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)) for n in ast.walk(f)}
        for n in ast.walk(tree):
            if isinstance(n, (ast.Import, ast.ImportFrom)):
                out += [(m, t, n.lineno, id(n) in inner) for t in _targets(n, mods) if t != m]
    return out

def cycles(edges):
    "Strongly connected components of more than one module (Tarjan)."
    g = defaultdict(set)
    for a, b, *_ in edges: g[a].add(b)
    idx, low, stack, on, res, c = {}, {}, [], set(), [], [0]
    def visit(v):
        idx[v] = low[v] = c[0]; c[0] += 1; stack.append(v); on.add(v)
        for w in sorted(g[v]):
            if w not in idx: visit(w); low[v] = min(low[v], low[w])
            elif w in on: low[v] = min(low[v], idx[w])
        if low[v] == idx[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v: break
            if len(comp) > 1: res.append(sorted(comp))
    for v in sorted(list(g)):
        if v not in idx: visit(v)
    return res

def upward(edges):
    "Imports that do not go strictly down the LAYERS (or name a module LAYERS does not place)."
    return [(a, b, line) for a, b, line, _ in edges if a not in RANK or b not in RANK or RANK[b] >= RANK[a]]

# private internals of third-party libraries: a leading-underscore attribute of an object the library did not define
_OWN_PRIVATE = re.compile(r"^_[a-z]")
def private_couplings(pkg=PKG, exclude=("_compat",)):
    """[(module, line, attribute)] for `x._name` or `getattr(x, "_name")` where `_name` is not defined by playbook_lib and `x` is
    not self/cls. Private state of a third-party base class used through `self` (TRL's `_metrics`) is not seen: keep such code in
    `_compat` too (its functions take the object as an argument)."""
    own = set()
    for p in pkg.glob("*.py"):
        for n in ast.walk(ast.parse(p.read_text())):
            if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)): own.add(n.name)
            elif isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store): own.add(n.attr)
            elif isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store): own.add(n.id)
            elif isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name): own.add(n.target.id)
    out = []
    for m in modules(pkg):
        if m in exclude: continue
        for n in ast.walk(ast.parse((pkg/f"{m}.py").read_text())):
            if isinstance(n, ast.Attribute) and _OWN_PRIVATE.match(n.attr) and n.attr not in own:
                if isinstance(n.value, ast.Name) and n.value.id in ("self", "cls"): continue
                out.append((m, n.lineno, n.attr))
            elif (isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in ("getattr", "hasattr", "setattr")
                  and len(n.args) > 1 and isinstance(n.args[1], ast.Constant) and isinstance(n.args[1].value, str)
                  and _OWN_PRIVATE.match(n.args[1].value) and n.args[1].value not in own):
                out.append((m, n.lineno, n.args[1].value))   # getattr(x, "_name", None): the guard that turns a fix into a no-op
    return out

def _cells(nb): return json.loads(nb.read_text())["cells"]
def _src(c): return "".join(c["source"])
def _directives(s): return [l[3:].split() for l in s.splitlines() if l.startswith("#| ")]
def _exported(c): return c["cell_type"] == "code" and any(d and d[0] in ("export", "exports", "exporti") for d in _directives(_src(c)))

def exported_cell_lines(nbs=NBS):
    "Lines of code (no directives, no blank lines) of every exported cell."
    return [sum(1 for l in _src(c).splitlines() if l.strip() and not l.startswith("#|")) for nb in sorted(nbs.glob("*.ipynb"))
            for c in _cells(nb) if _exported(c)]

def _default_exp(cells):
    for c in cells:
        for d in _directives(_src(c)):
            if d[:1] == ["default_exp"]: return d[1]

def exercised_on_page(nbs=NBS, pkg=PKG):
    "{module: (public functions and classes in __all__, those a non-exported code cell of their page names)}."
    res = {}
    for nb in sorted(nbs.glob("*.ipynb")):
        cells = _cells(nb); m = _default_exp(cells)
        if not m or not (pkg/f"{m}.py").exists(): continue
        tree = ast.parse((pkg/f"{m}.py").read_text())
        defs = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))}
        all_ = next((ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)
                     and any(getattr(t, "id", None) == "__all__" for t in n.targets)), [])
        public = sorted(set(all_) & defs)
        used = set()
        for c in cells:
            if c["cell_type"] == "code" and not _exported(c) and not _src(c).startswith("#| eval: false"):
                used |= set(re.findall(r"[A-Za-z_]\w*", _src(c)))
        res[m] = (public, sorted(set(public) & used))
    return res

def figures():
    e = imports()
    ex = exercised_on_page()
    lines = exported_cell_lines()
    n_pub, n_used = sum(len(p) for p, _ in ex.values()), sum(len(u) for _, u in ex.values())
    return dict(cycles=cycles(e), upward=upward(e), in_function_imports=sum(1 for *_, f in e if f),
                top_level_imports=sum(1 for *_, f in e if not f), exported_cells=len(lines),
                median_exported_cell_lines=statistics.median(lines), exported_cells_over_25=sum(l > 25 for l in lines),
                public=n_pub, public_exercised=n_used, public_exercised_share=round(n_used/n_pub, 3),
                private_couplings_outside_compat=len(private_couplings()))

if __name__ == "__main__":
    f = figures()
    if "--check" in sys.argv:
        bad = [f"import cycle: {' <-> '.join(c)}" for c in f["cycles"]] + [f"playbook_lib/{a}.py:{l} imports {b} (not below it in LAYERS)"
                                                                         for a, b, l in f["upward"]]
        print("\n".join(bad) or "layers: ok"); sys.exit(1 if bad else 0)
    for k, v in f.items(): print(f"{k}: {v if not isinstance(v, list) or len(v) < 8 else f'{len(v)} items'}")
    if "-v" in sys.argv:
        for m, l, a in private_couplings(): print(f"  private: {m}.py:{l} .{a}")
        for m, (p, u) in exercised_on_page().items(): print(f"  {m}: {len(u)}/{len(p)} exercised; not: {sorted(set(p)-set(u))}")
