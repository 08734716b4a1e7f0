"""The notebook's kernel-metadata.json, filled in from the config, and the folder `kaggle kernels push` uploads.

Field names and rules are the kaggle CLI's (2.x, `kernels_push`): `enable_internet`
defaults to true when absent, so it is always written, as false (Kaggle scores code
competitions only with internet off); `machine_shape` picks the accelerator
(NvidiaL4 is 4 x L4); `docker_image_pinning_type` is "original" or "latest" (the
wheelhouse is built for one image's Python, so pin it).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from arc25.config import KaggleConfig
from arc25.errors import UserError
from arc25.kaggle.dataset import check_no_credentials

KERNEL_METADATA_NAME = "kernel-metadata.json"
NOTEBOOK_NAME = "kaggle_notebook.ipynb"
PINNING_TYPES = ("original", "latest")


def split_model_sources(sources: list[str]) -> tuple[list[str], list[str]]:
    """kaggle.model_sources -> (Kaggle models: owner/model/framework/variation/version, datasets: owner/slug)."""
    models, datasets = [], []
    for source in sources:
        parts = source.split("/")
        if len(parts) == 5 and all(parts):
            models.append(source)
        elif len(parts) == 2 and all(parts):
            datasets.append(source)  # the model uploaded as a dataset
        else:
            raise UserError(f"kaggle.model_sources {source!r}: expected owner/model/framework/variation/version "
                            "(a Kaggle model) or owner/slug (a dataset)")
    return models, datasets


def kernel_metadata(config: KaggleConfig, template: dict | None = None) -> dict:
    """The committed metadata (title, privacy, keywords) with everything the config decides filled in."""
    if config.docker_image_pinning_type not in PINNING_TYPES:
        raise UserError(f"kaggle.docker_image_pinning_type={config.docker_image_pinning_type!r}: expected one of "
                        f"{', '.join(PINNING_TYPES)}")
    models, model_datasets = split_model_sources(config.model_sources)
    meta = dict(template or {})
    meta.update({
        "id": f"{config.username}/{config.notebook}",
        "title": meta.get("title") or config.notebook,
        "code_file": NOTEBOOK_NAME,
        "language": "python",
        "kernel_type": "notebook",
        "is_private": meta.get("is_private", True),
        "enable_gpu": True,
        "enable_tpu": False,
        "enable_internet": False,
        "machine_shape": config.machine_shape,
        "docker_image_pinning_type": config.docker_image_pinning_type,
        "competition_sources": [config.competition],
        "dataset_sources": [f"{config.username}/{config.code_dataset}", f"{config.username}/{config.wheels_dataset}",
                            *model_datasets],
        "model_sources": models,
        "kernel_sources": meta.get("kernel_sources", []),
        "keywords": meta.get("keywords", []),
    })
    return meta


def clean_notebook(text: str) -> str:
    """The notebook without outputs or execution counts (what the kaggle CLI uploads anyway)."""
    notebook = json.loads(text)
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") == "code":
            cell["outputs"], cell["execution_count"] = [], None
    return json.dumps(notebook, indent=1) + "\n"


def stage_kernel(out: Path, notebook: Path, template: Path | None, config: KaggleConfig) -> Path:
    """`out` with the notebook and its kernel-metadata.json, nothing else."""
    if not notebook.is_file():
        raise UserError(f"{notebook}: notebook not found")
    template_data = json.loads(template.read_text()) if template and template.is_file() else {}
    check_no_credentials([notebook])
    if out.exists():
        others = sorted(p.name for p in out.iterdir() if p.name not in (NOTEBOOK_NAME, KERNEL_METADATA_NAME))
        if others:
            raise UserError(f"{out}: holds {others[0]}; the kernel folder must hold only the notebook and its metadata")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / NOTEBOOK_NAME).write_text(clean_notebook(notebook.read_text()))
    (out / KERNEL_METADATA_NAME).write_text(json.dumps(kernel_metadata(config, template_data), indent=2) + "\n")
    return out
