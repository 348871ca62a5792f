"""Reading benchmark records from a local folder: parquet, JSON (a list) or JSONL, as releases ship them."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spatial_ttt.eval.errors import EvalError

RECORD_SUFFIXES = (".parquet", ".jsonl", ".json")
# Hugging Face shards one split as NAME-00000-of-00002.parquet; such shards are read together.
_SHARD = re.compile(r"^(?P<prefix>.+)-\d{5}-of-\d{5}$")


@dataclass(frozen=True)
class Row:
    """One raw record and where it came from (for error messages)."""

    source: Path
    index: int  # 0-based position in the file
    fields: dict[str, Any]

    @property
    def where(self) -> str:
        return f"{self.source} record #{self.index}"


def record_files(data: Path) -> list[Path]:
    """The record file(s) to read: `data` itself, or the single record file (or shard set) in the folder.

    A folder is searched at its top level, then in data/ (the Hugging Face layout).
    """
    if not data.exists():
        raise EvalError(f"data path does not exist: {data}")
    if data.is_file():
        if data.suffix not in RECORD_SUFFIXES:
            raise EvalError(f"{data}: unsupported record file type (expected one of {', '.join(RECORD_SUFFIXES)})")
        return [data]
    for folder in (data, data / "data"):
        found = (
            sorted(p for p in folder.glob("*") if p.is_file() and p.suffix in RECORD_SUFFIXES)
            if folder.is_dir()
            else []
        )
        if not found:
            continue
        if len(found) == 1:
            return found
        prefixes = {m.group("prefix") if (m := _SHARD.match(p.stem)) else None for p in found}
        if len(prefixes) == 1 and None not in prefixes:
            return found
        names = ", ".join(p.name for p in found)
        raise EvalError(f"several record files in {folder} ({names}); pass the one to use with --data FILE")
    raise EvalError(f"no record file ({', '.join(RECORD_SUFFIXES)}) found in {data} or {data / 'data'}")


def read_rows(files: Iterable[Path]) -> list[Row]:
    rows: list[Row] = []
    for path in files:
        rows.extend(Row(path, i, fields) for i, fields in enumerate(_read_file(path)))
    return rows


def _read_file(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".parquet":
        return _read_parquet(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        records = []
        for line_no, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise EvalError(f"{path} line {line_no}: not valid JSON ({err.msg})") from None
    else:
        try:
            records = json.loads(text)
        except json.JSONDecodeError as err:
            raise EvalError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None
        if not isinstance(records, list):
            raise EvalError(f"{path}: expected a JSON list of records, got {type(records).__name__}")
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise EvalError(f"{path} record #{i}: expected an object, got {type(record).__name__}")
    return records


def _read_parquet(path: Path) -> list[dict[str, Any]]:
    try:
        import pyarrow.parquet as pq  # optional: only parquet releases need it
    except ImportError:
        raise EvalError(
            f"{path}: reading parquet needs pyarrow (pip install pyarrow==26.0.1), or convert it to JSONL"
        ) from None
    try:
        return pq.read_table(path).to_pylist()
    except Exception as err:  # pyarrow raises several types for damaged files
        raise EvalError(f"{path}: cannot read parquet ({err})") from None


def require(row: Row, key: str, kind: type | tuple[type, ...]) -> Any:
    """row.fields[key], checked to be present and of `kind`."""
    if key not in row.fields or row.fields[key] is None:
        raise EvalError(f"{row.where}: missing field {key!r}")
    value = row.fields[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise EvalError(f"{row.where}: field {key!r} has type {type(value).__name__}, expected {_kind_name(kind)}")
    return value


def require_number(row: Row, key: str) -> float:
    """A number, or a string holding one (VSI-Bench stores numerical answers as text)."""
    value = require(row, key, (int, float, str))
    try:
        number = float(value)
    except ValueError:
        raise EvalError(f"{row.where}: field {key!r} = {value!r} is not a number") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise EvalError(f"{row.where}: field {key!r} = {value!r} is not a finite number")
    return number


def require_str_list(row: Row, key: str) -> list[str]:
    value = require(row, key, (list, tuple))
    if not value or not all(isinstance(v, str) for v in value):
        raise EvalError(f"{row.where}: field {key!r} must be a non-empty list of strings")
    return list(value)


def record_id(row: Row, key: str = "id") -> str:
    """The record's id as text; records without one are keyed by their position in the file."""
    value = row.fields.get(key)
    return str(value) if value is not None else f"{row.source.name}#{row.index}"


def check_unique(ids: list[str], rows: list[Row]) -> None:
    seen: dict[str, Row] = {}
    for sample_id, row in zip(ids, rows, strict=True):
        if sample_id in seen:
            raise EvalError(f"{row.where}: duplicate id {sample_id!r} (also {seen[sample_id].where})")
        seen[sample_id] = row


def resolve_media(relative: str, roots: list[Path]) -> Path:
    """First existing roots[i] / relative (absolute paths are taken as they are)."""
    candidate = Path(relative)
    if candidate.is_absolute():
        return candidate
    for root in roots:
        if (root / candidate).exists():
            return root / candidate
    return roots[0] / candidate  # missing: the runner reports it with the sample id before starting


def media_roots(data: Path, files: list[Path]) -> list[Path]:
    """Where relative media paths are looked up: the data folder, then the record file's folder and its parent."""
    base = data if data.is_dir() else data.parent
    roots = [base]
    for extra in (files[0].parent, files[0].parent.parent):
        if extra not in roots:
            roots.append(extra)
    return roots


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)
