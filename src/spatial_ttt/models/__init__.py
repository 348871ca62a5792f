from .modeling import SpatialTTTForConditionalGeneration, SpatialTTTOutput

__all__ = ["SpatialTTTForConditionalGeneration", "SpatialTTTOutput"]
