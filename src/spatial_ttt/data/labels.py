"""Object categories: raw annotation labels -> the category names questions use.

Scan annotations carry free-text labels ("Cabinet ", "kitchen cabinets", "wall"). A LabelMap turns each into a
category, or None to drop it:
- ScanNet: `scannetv2-labels.combined.tsv` (raw_category -> NYU40 class, or its cleaned `category` where the
  NYU40 class is a catch-all such as "otherfurniture"), with a few spelling fixes (refridgerator, television);
- ARKitScenes: its 17 classes, `tv_monitor` written "tv";
- a user map: that same tsv format, or JSON {"raw label": "category" or null}.
Labels are compared case- and whitespace-insensitively; structure (wall, floor, ceiling) is always dropped.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from pathlib import Path

from .scene import SceneValidationError

SCANNET_LABEL_MAP = "scannetv2-labels.combined.tsv"
STRUCTURE = frozenset({"wall", "floor", "ceiling"})
# NYU40 classes too broad to name an object: the tsv's cleaned raw name is used instead
_CATCH_ALL = frozenset({"otherfurniture", "otherprop", "otherstructure"})
# NYU40 spellings -> the names of the synthetic CATALOG (NYU40 misspells refrigerator)
_RESPELL = {"refridgerator": "refrigerator", "television": "tv", "night stand": "nightstand"}


def normalize(label: str) -> str:
    """'  Kitchen_Cabinets ' -> 'kitchen cabinets'."""
    return " ".join(str(label).replace("_", " ").lower().split())


class LabelMap:
    """raw label -> category (None = drop). Labels missing from the map keep their normalized text (readers warn
    about them, see `knows`)."""

    def __init__(self, mapping: Mapping[str, str | None], source: str = "<built-in>") -> None:
        self.mapping = {normalize(k): (None if v is None else normalize(v)) for k, v in mapping.items()}
        self.source = source

    def knows(self, raw: str) -> bool:
        return normalize(raw) in self.mapping

    def __call__(self, raw: str) -> str | None:
        key = normalize(raw)
        category = self.mapping.get(key, key)
        return None if not category or category in STRUCTURE else category

    @classmethod
    def from_file(cls, path: str | Path) -> LabelMap:
        """ScanNet's tsv (columns raw_category, category, nyu40class) or JSON {"raw": "category" or null}."""
        path = Path(path)
        if not path.is_file():
            raise SceneValidationError(f"{path}: label map not found")
        if path.suffix.lower() == ".json":
            try:
                d = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as e:
                raise SceneValidationError(f"{path}: not valid JSON ({e})") from None
            if not isinstance(d, dict) or not all(isinstance(v, str) or v is None for v in d.values()):
                raise SceneValidationError(f'{path}: a JSON label map is {{"raw label": "category" or null}}')
            return cls(d, str(path))
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        need = {"raw_category", "category", "nyu40class"}
        if not rows or not need <= set(rows[0]):
            raise SceneValidationError(f"{path}: a tsv label map needs the columns {sorted(need)} "
                                       f"(as {SCANNET_LABEL_MAP})")
        mapping = {}
        for r in rows:
            nyu = normalize(r["nyu40class"])
            mapping[r["raw_category"]] = r["category"] if nyu in _CATCH_ALL or not nyu else _RESPELL.get(nyu, nyu)
        return cls(mapping, str(path))


ARKITSCENES_CLASSES = ("cabinet", "refrigerator", "shelf", "stove", "bed", "sink", "washer", "toilet", "bathtub", "oven",
                       "dishwasher", "fireplace", "stool", "chair", "table", "tv_monitor", "sofa")


def arkitscenes_labels() -> LabelMap:
    """ARKitScenes' own 17 classes, kept (tv_monitor written "tv")."""
    return LabelMap({c: "tv" if c == "tv_monitor" else c for c in ARKITSCENES_CLASSES}, "ARKitScenes classes")


def find_scannet_label_map(folder: Path) -> Path | None:
    """scannetv2-labels.combined.tsv in the scan folder or up to two folders above (ScanNet keeps it at the
    dataset root, beside scans/)."""
    for d in (folder, folder.parent, folder.parent.parent):
        if (d / SCANNET_LABEL_MAP).is_file():
            return d / SCANNET_LABEL_MAP
    return None
