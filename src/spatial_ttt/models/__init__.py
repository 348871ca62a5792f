from .modeling import SpatialTTTForConditionalGeneration, SpatialTTTOutput, is_ttt_parameter

__all__ = ["SpatialTTTForConditionalGeneration", "SpatialTTTOutput", "is_ttt_parameter"]
