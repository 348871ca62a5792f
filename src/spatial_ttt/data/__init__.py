"""Data for Spatial-TTT: scene schema and readers, dense scene descriptions, VSI-Bench-style spatial QA,
procedural synthetic scenes rendered to video, and SFT shards in the training conversation format."""

from .dataset import build_dataset_from_annotations, generate_synthetic_dataset
from .describe import describe_scene
from .qa import QA, QUESTION_TYPES, generate_qa
from .labels import LabelMap
from .readers import UnknownLayoutError, read_arkitscenes, read_box_json, read_scannet, read_scene
from .render import BoxRenderer, render_scene, write_video
from .scene import Box3D, Frame, Intrinsics, Room, Scene, SceneObject, SceneValidationError, load_scene, save_scene
from .sft import build_sft_records, read_sft_shards, write_sft_shards
from .synth import CATALOG, sample_scene

__all__ = [
    "Box3D", "BoxRenderer", "CATALOG", "Frame", "Intrinsics", "LabelMap", "QA", "QUESTION_TYPES", "Room", "Scene", "SceneObject",
    "SceneValidationError", "UnknownLayoutError", "build_dataset_from_annotations", "build_sft_records",
    "describe_scene", "generate_qa", "generate_synthetic_dataset", "load_scene", "read_arkitscenes", "read_box_json", "read_scannet",
    "read_scene", "read_sft_shards", "render_scene", "sample_scene", "save_scene", "write_sft_shards", "write_video",
]
