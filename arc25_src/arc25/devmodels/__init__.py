"""Models for development only: generated and CPU-trained stand-ins for the BARC model, and their data.

`tiny_model` (the random tiny Llama of the tests and the CPU dry run), `warm_model` (that model
trained on CPU to write programs of `program_family`, the dry run's default), `reader_model` (a
larger one trained to read the train outputs, docs/learning.md) and `program_family` (the DSL
program family they learn from, also the tasks of `bench/bench_learning.py`).

Only commands (`make-tiny-model`, `dry-run` without `--model`, `doctor`'s fallback tokenizer),
tests and benches import it: the Kaggle run (`arc25 run`, the workers, the solver, the engines)
never does, which `tests/test_layers.py` checks. It ships in the arc25 wheel all the same (a few
tens of kB), so `arc25 dry-run` and `make-tiny-model` work from an installed wheel.
"""
