"""Quality and speed comparisons (see RESULTS.md); run each as ``python -m benchmarks.NAME``
from the repository root."""
