"""Config loading and validation outside Snakemake (CLI, tests, serving)."""

from __future__ import annotations

import copy
import functools
import hashlib
import json
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml


def schema_path() -> Path:
    """The config schema, shipped inside the package (the workflow validates with it too)."""
    # a regular or editable install keeps package data as plain files
    return Path(str(resources.files("crossemotion.schemas") / "config.schema.yaml"))


@functools.cache
def _schema() -> dict[str, Any]:
    return yaml.safe_load(schema_path().read_text())


def schema_default(definition: str, key: str) -> Any:
    """The schema's default of ``key`` in ``definitions.{definition}``: the library falls
    back on it where a config (a test's, an old checkpoint's) leaves the key out, so a
    key has one default, the one the workflow's validation fills in."""
    try:
        return _schema()["definitions"][definition]["properties"][key]["default"]
    except KeyError:
        raise KeyError(f"the config schema sets no default for {definition}.{key}") from None


def property_default(*keys: str) -> Any:
    """The schema's default of the config key at ``keys`` (``"seed"``, or ``"transfer",
    "unaligned"``), for library callers whose config did not pass through the
    workflow's validation (which fills the defaults in)."""
    node = _schema()
    try:
        for key in keys:
            node = node["properties"][key]
        return node["default"]
    except KeyError:
        raise KeyError(f"the config schema sets no default for {'.'.join(keys)}") from None


class ConfigError(ValueError):
    """A config that does not match the schema; the message names the key."""


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Merge like Snakemake merges several --configfile files."""
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def load_config(*paths: str | Path) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for path in paths:
        with open(path) as fh:
            config = deep_merge(config, yaml.safe_load(fh) or {})
    validate_config(config)
    return config


def validate_config(config: Mapping[str, Any]) -> None:
    import jsonschema

    schema = _schema()
    validator_cls = jsonschema.validators.validator_for(schema)
    errors = sorted(validator_cls(schema).iter_errors(config), key=lambda e: list(e.path))
    if errors:
        lines = []
        for err in errors:
            where = ".".join(str(p) for p in err.path) or "<top level>"
            lines.append(f"config key {where}: {err.message}")
        raise ConfigError("invalid config:\n  " + "\n  ".join(lines))


# keys that apply to a whole model and so to every member of its ensemble
WHOLE_MODEL_KEYS = ("enabled", "datasets", "threads", "gpus", "ensemble")


def ensemble_members(
    model: str, section: Mapping[str, Any], validate: bool = True
) -> list[dict[str, Any]]:
    """The sections of the members of ``models.{model}.ensemble``: the section itself
    (without ``ensemble``) first, then the section with each entry's keys replaced;
    ``[]`` when the section has no ensemble.

    With ``validate`` each member is checked against the schema of
    ``models.{model}``, so a bad key stops the workflow while its DAG is built,
    not an hour into the first member's training (the library's typed configs
    take keys the schema does not offer, and check them themselves).
    """
    import jsonschema

    overrides = list(section.get("ensemble") or [])
    if not overrides:
        return []
    base = {k: v for k, v in section.items() if k != "ensemble"}
    members = [base]
    schema = _schema()
    node = schema["properties"]["models"]["properties"][model]
    validator = jsonschema.validators.validator_for(schema)(schema).evolve(schema=node)
    check = validator.iter_errors if validate else lambda member: ()
    for i, override in enumerate(overrides, start=1):
        where = f"models.{model}.ensemble[{i - 1}]"
        shared = sorted(set(override) & set(WHOLE_MODEL_KEYS))
        if shared:
            raise ConfigError(
                f"config key {where}: {', '.join(shared)} apply to the whole model, "
                f"not to one member; set them on models.{model}"
            )
        member = {**base, **override}
        errors = [e.message for e in check(member)]
        if errors:
            raise ConfigError(f"config key {where}: " + "; ".join(errors))
        # a member equal to another averages a model with itself (seed aside)
        if member in members:
            raise ConfigError(f"config key {where}: this member is member {members.index(member)}")
        members.append(member)
    return members


def config_hash(config: Mapping[str, Any]) -> str:
    """Stable short hash of a config (or a part of it) for provenance."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def faces_stage(config: Mapping[str, Any], dataset: str) -> dict[str, Any] | None:
    """The faces stage that cut ``dataset``'s training crops, as a model records it:
    ``meld.faces``; IFEED's images are warped onto the template only when
    ``ifeed.align_faces`` is true as well. None when the config has no faces stage."""
    faces = (config.get("meld") or {}).get("faces")
    if faces is None:
        return None
    if dataset != "ifeed":
        return dict(faces)
    warped = bool(faces.get("align")) and bool((config.get("ifeed") or {}).get("align_faces", True))
    return {**faces, "align": warped}
