from .attention import Attention
from .ttt import TTTAttention

__all__ = ["Attention", "TTTAttention"]
