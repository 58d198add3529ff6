"""Jupyter server settings for this repository: `make lab` passes this file with --config.

- jupytext's contents manager: notebooks/<name>.py and <name>.ipynb are one notebook, saved to both files (the
  pairing is notebooks/jupytext.toml's; elsewhere jupytext.toml pairs nothing).
- A paired notebook is a source, so its .ipynb is saved as `jupytext --sync` writes it: no outputs, no execution
  counts, cell metadata reduced to tags and notebook metadata to what the .py holds (jupytext, kernelspec; not the
  kernel's language_info). Saving in Lab then changes only what was edited, and tests/test_notebooks.py stays
  green. Executed copies (results/notebooks/, papermill outputs) are not paired and keep their outputs.
- Lab's settings overrides (jupyter/lab/overrides.json): the .py of a pair opens as a notebook on double-click
  (jupytext's viewer), and no news pop-up.
"""

from pathlib import Path

from jupytext import AsyncTextFileContentsManager

HERE = Path(__file__).resolve().parent
NOTEBOOK_METADATA = ("jupytext", "kernelspec")  # jupytext's default filter for the .py header
CELL_METADATA = ("tags",)  # the pairs' cell_metadata_filter: tags,-all


def strip_paired_notebook(model, path, contents_manager, **kwargs):
    """Pre-save hook: a notebook model bound for a paired .ipynb leaves with its inputs only."""
    if model.get("type") != "notebook" or not model.get("content"):
        return
    if path.strip("/") not in getattr(contents_manager, "paired_notebooks", {}):  # jupytext's record of pairs
        return
    notebook = model["content"]
    notebook["metadata"] = {k: v for k, v in notebook["metadata"].items() if k in NOTEBOOK_METADATA}
    for cell in notebook["cells"]:
        cell["metadata"] = {k: v for k, v in cell.get("metadata", {}).items() if k in CELL_METADATA}
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None


class PairedNotebooksContentsManager(AsyncTextFileContentsManager):
    """jupytext's contents manager with the hook above (registered here: the server applies its config twice, and
    a configured pre_save_hook warns when set again)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.register_pre_save_hook(strip_paired_notebook)


c = get_config()  # noqa: F821 (provided by the config loader)
c.ServerApp.contents_manager_class = PairedNotebooksContentsManager
c.LabApp.app_settings_dir = str(HERE / "lab")
