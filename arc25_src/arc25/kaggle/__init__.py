"""The Kaggle side: an offline wheelhouse, the datasets to upload, the kaggle CLI, and the notebook's helpers.

Kaggle runs the notebook with internet off, so everything it installs comes from
attached datasets: `wheelhouse` downloads and checks the wheels, `dataset` stages a
folder for `kaggle datasets create/version` (never a credential), `cli_runner` runs
the kaggle CLI, `kernel` writes the notebook's kernel-metadata.json from the config,
and `notebook` holds what the notebook does on Kaggle (find inputs by content, check
the GPU driver against the wheelhouse's CUDA build, install offline, the deadline).

`notebook` and everything it imports use only the standard library and arc25's light
modules: the notebook imports them straight from the arc25 wheel file (a zip) before
anything is installed.
"""
