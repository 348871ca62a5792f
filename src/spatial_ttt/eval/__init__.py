"""Benchmark evaluation: VSI-Bench, VSI-SUPER (Recall, Count) and MindCube with their official metrics.

Importing this package needs neither lmms-eval nor pyarrow; both are loaded only when used.
"""

from spatial_ttt.eval.interfaces import StreamingQAModel, StreamSession, VideoQAModel
from spatial_ttt.eval.results import ScoreRow, Summary
from spatial_ttt.eval.runner import BENCHMARKS, EvalError, run_benchmark

__all__ = [
    "BENCHMARKS",
    "EvalError",
    "ScoreRow",
    "StreamSession",
    "StreamingQAModel",
    "Summary",
    "VideoQAModel",
    "run_benchmark",
]
