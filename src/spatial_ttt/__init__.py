"""Spatial-TTT: streaming spatial intelligence with test-time training on Qwen3-VL."""

__version__ = "0.1.0"
