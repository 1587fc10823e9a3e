"""Reading policy and tenants files (local, gs://, s3://) into plain data, with errors that name the file."""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError
from smart_open import open as smart_open

from policies.model import PolicyError

POLICY_SUFFIXES: tuple[str, ...] = (".yaml", ".yml", ".json")
ModelT = TypeVar("ModelT", bound=BaseModel)

TENANTS_FILE_NAMES: frozenset[str] = frozenset({"tenants.yaml", "tenants.yml", "tenants.json"})


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe YAML loader that rejects duplicate mapping keys (PyYAML silently keeps the last one)."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)
    mapping: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in mapping:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        mapping[key] = loader.construct_object(value_node, deep=deep)
    return mapping


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def _reject_duplicate_json_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    mapping: dict[str, Any] = {}
    for key, value in pairs:
        if key in mapping:
            raise ValueError(f"duplicate key {key!r}")
        mapping[key] = value
    return mapping


def _is_remote(path: str) -> bool:
    return "://" in path


def _has_policy_suffix(path: str) -> bool:
    return path.lower().endswith(POLICY_SUFFIXES)


def _base_name(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def _is_policy_file_in_dir(path: str) -> bool:
    return _has_policy_suffix(path) and _base_name(path).lower() not in TENANTS_FILE_NAMES


def _list_remote_dir(prefix: str) -> list[str]:
    """List files directly under a gs:// / s3:// prefix (through Beam's filesystems, imported lazily)."""
    from apache_beam.io.filesystems import FileSystems

    prefix = prefix.rstrip("/") + "/"
    found = []
    try:
        for result in FileSystems.match([prefix + "*"]):
            found.extend(meta.path for meta in result.metadata_list)
    except Exception as exc:  # missing filesystem extras, auth, no such bucket
        raise PolicyError(f"{prefix}: cannot list policy directory: {type(exc).__name__}: {exc}") from exc
    return sorted(p for p in found if "/" not in p[len(prefix) :])


def iter_policy_files(policy_paths: Sequence[str]) -> Iterator[str]:
    """Yield policy files: each path itself if it is a file, else its *.yaml/*.yml/*.json (sorted).

    Files named tenants.yaml/.yml/.json inside directories are skipped (they map tenants, not policies).
    A remote path counts as a directory when it has no policy suffix.
    """
    if isinstance(policy_paths, str | os.PathLike):  # one path, not a sequence of characters
        policy_paths = [str(policy_paths)]
    seen: set[str] = set()
    for raw in policy_paths:
        path = str(raw)
        if _is_remote(path):
            if _has_policy_suffix(path):
                listing = [path]
            else:
                listing = [p for p in _list_remote_dir(path) if _is_policy_file_in_dir(p)]
        else:
            local = pathlib.Path(path)
            if local.is_file():
                listing = [path]
            elif local.is_dir():
                listing = sorted(str(p) for p in local.iterdir() if p.is_file() and _is_policy_file_in_dir(str(p)))
            else:
                raise PolicyError(f"{path}: no such file or directory")
        for file in listing:
            key = file if _is_remote(file) else str(pathlib.Path(file).resolve())
            if key not in seen:  # the same file named twice (a directory and a file in it) counts once
                seen.add(key)
                yield file


def read_mapping(path: str) -> dict[str, Any]:
    """Read a YAML or JSON file (by suffix; YAML otherwise) whose top level must be a mapping."""
    try:
        with smart_open(path, "r", encoding="utf-8") as handle:
            text = handle.read()
    except Exception as exc:  # any transport failure (missing gcs/s3 extras, auth, 404) is a bad path
        raise PolicyError(f"{path}: cannot read: {type(exc).__name__}: {' '.join(str(exc).split())}") from exc
    try:
        if path.lower().endswith(".json"):
            data = json.loads(text, object_pairs_hook=_reject_duplicate_json_keys)
        else:
            data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except (yaml.YAMLError, ValueError) as exc:
        reason = " ".join(str(exc).split())
        if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
            mark = exc.problem_mark
            reason = f"line {mark.line + 1}, column {mark.column + 1}: {exc.problem}"
        raise PolicyError(f"{path}: not valid {'JSON' if path.endswith('.json') else 'YAML'}: {reason}") from exc
    if not isinstance(data, dict):
        raise PolicyError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def field_path(loc: Sequence[str | int]) -> str:
    """Render a pydantic error location as `categories[3].code`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _describe_error(error: dict[str, Any]) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown field"
    if error["type"] == "missing":
        return "required field is missing"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def validate_as(model: type[ModelT], data: dict[str, Any], path: str) -> ModelT:
    """Validate `data` as `model`, turning pydantic errors into one PolicyError naming file and fields."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [f"{field_path(err['loc'])}: {_describe_error(err)}" for err in exc.errors()]
        raise PolicyError(f"{path}: " + "; ".join(problems)) from None
