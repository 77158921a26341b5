"""Run chapters top to bottom with the readers' budgets (IN_TEST unset) and keep their outputs: what the site shows.

    python tools/run_chapter.py nbs/02_train.ipynb [nbs/03_data.ipynb ...] [--cell-timeout 3600]

`nbdev-test` runs the same cells with tiny budgets and throws the outputs away; this is the other half: the rendered
numbers, tables and plots come from these runs. A notebook is written back only when every cell succeeded, atomically
(temporary file, then rename), so a failed or interrupted run leaves the committed outputs as they were.
With several notebooks, each runs in its own Python process, as a reader's fresh kernel would: models, caches and the
peak-memory counter of one chapter never leak into the next chapter's numbers.
Cells marked `#| eval: false` (the Colab install cell, credentialed calls) are skipped, as nbdev skips them.
Run `nbdev-clean` afterwards, as before any commit.
"""
import argparse, os, sys, time
from pathlib import Path

def _skip(cell):
    "Cells nbdev never executes: `#| eval: false`."
    return cell.cell_type == "code" and any(l.replace(" ", "").lower() == "#|eval:false" for l in cell.source.splitlines())

def run_chapter(path, cell_timeout=3600, log=print):
    "Execute notebook `path` with full budgets; write it back with outputs if every cell ran. Returns seconds taken."
    from fastcore.nbio import read_nb, write_nb
    from execnb.shell import CaptureShell
    from fastcore.xtras import working_directory
    path = Path(path).resolve()
    os.environ.pop("IN_TEST", None)
    nb, t0, slow = read_nb(path), time.time(), []
    def post(cell):
        secs = cell.metadata.get("execution", {}).get("total", 0)
        if secs > 30: slow.append(f"  {path.name} cell {cell.idx_}: {secs:.0f} s")
    shell = CaptureShell(path)
    with working_directory(path.parent):
        shell.run_all(nb, exc_stop=True, preproc=_skip, postproc=post, cell_timeout=cell_timeout)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write_nb(nb, tmp); tmp.replace(path)
    for line in slow: log(line)
    return time.time() - t0

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("notebooks", nargs="+"); p.add_argument("--cell-timeout", type=int, default=3600)
    a = p.parse_args(argv)
    if len(a.notebooks) > 1:   # one fresh process per chapter
        import subprocess
        failed = [nb for nb in a.notebooks
                  if subprocess.run([sys.executable, __file__, nb, "--cell-timeout", str(a.cell_timeout)]).returncode]
        if failed: print("FAILED: " + " ".join(failed), file=sys.stderr)
        return 1 if failed else 0
    failed = []
    for nb in a.notebooks:
        print(f"== {nb}", flush=True)
        try: print(f"   done in {run_chapter(nb, a.cell_timeout)/60:.1f} min", flush=True)
        except Exception as e:
            failed.append(nb); print(f"   FAILED, outputs not written: {type(e).__name__}: {str(e)[-3000:]}", file=sys.stderr, flush=True)
    return 1 if failed else 0

if __name__ == "__main__": raise SystemExit(main())
