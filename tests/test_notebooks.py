"""Every notebook executes top to bottom with LSX_NOTEBOOK_SMOKE=1 (tiny steps)."""
import os

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

HERE = os.path.dirname(os.path.abspath(__file__))
NB_DIR = os.path.join(os.path.dirname(HERE), "notebooks")
NAMES = ["quickstart", "sweeps", "quantized_latents", "navigating_latents", "composition",
         "diffusion"]


def test_every_notebook_is_listed():
  found = sorted(f[:-6] for f in os.listdir(NB_DIR) if f.endswith(".ipynb"))
  assert found == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs(name, monkeypatch):
  monkeypatch.setenv("LSX_NOTEBOOK_SMOKE", "1")
  nb = nbformat.read(os.path.join(NB_DIR, f"{name}.ipynb"), as_version=4)
  # errors are recorded in the cells' outputs (allow_errors) and reported below by name
  client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", allow_errors=True,
                                   resources={"metadata": {"path": NB_DIR}})
  client.execute()
  errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
            if o.get("output_type") == "error"]
  assert not errors, [f"{e.get('ename')}: {e.get('evalue')}" for e in errors]
