"""``tunewise compare``: recipes x label fractions x seeds on one fixed split, with a TF-IDF
reference, and a report that answers "fine-tune or train from scratch?" with numbers."""

from tunewise.compare.report import print_comparison, write_report
from tunewise.compare.runs import CompareError, CompareOptions, load_results, run_comparison
from tunewise.compare.summary import verdict

__all__ = [
    "CompareError",
    "CompareOptions",
    "load_results",
    "print_comparison",
    "run_comparison",
    "verdict",
    "write_report",
]
