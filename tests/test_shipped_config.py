"""The shipped etc/hasherd/hasherd.toml lists every key with its default."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from hasherd import config as config_mod

SHIPPED = Path(__file__).resolve().parents[1] / "etc" / "hasherd" / "hasherd.toml"


def test_every_key_is_listed_with_its_default() -> None:
    text = SHIPPED.read_text()
    # Uncomment every "# key = value" line (a section header stays as it is).
    uncommented = re.sub(r"^# (\w+ = )", r"\1", text, flags=re.M)
    raw = tomllib.loads(uncommented)
    cfg = config_mod.from_mapping(raw, str(SHIPPED))
    defaults = config_mod.Config().to_dict()
    listed = cfg.to_dict()
    assert set(raw) == set(defaults)  # every section
    for section, keys in defaults.items():
        assert set(raw[section]) == set(keys), section  # every key, no unknown one
        for key, value in keys.items():
            if key == "seed":
                continue  # listed as an example: unset by default
            assert listed[section][key] == value, f"{section}.{key}"


def test_the_shipped_file_as_is_gives_the_defaults() -> None:
    cfg = config_mod.load(SHIPPED)
    assert cfg.to_dict() == config_mod.Config().to_dict()
