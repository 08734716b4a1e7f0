"""arc25: a Kaggle ARC Prize 2025 pipeline (search and learn with the BARC induction model)."""

__version__ = "0.1.0"
