"""personae.toml validation: errors name the file and setting and suggest a fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from personae import ConfigError, Project

from .conftest import write_toml


def test_unknown_setting_suggests_the_closest(tmp_path: Path) -> None:
    write_toml(tmp_path, '[sources.a]\ntable = "orders"\npath = "x.csv"\ndelimeter = ";"\n')
    with pytest.raises(ConfigError) as err:
        Project.open(tmp_path)
    msg = str(err.value)
    assert "personae.toml" in msg and "sources.a.delimeter" in msg
    assert "Did you mean 'delimiter'?" in msg


def test_unknown_store_setting(tmp_path: Path) -> None:
    write_toml(tmp_path, '[store]\nengin = "spark"\n')
    with pytest.raises(ConfigError, match="Did you mean 'engine'"):
        Project.open(tmp_path)


def test_bad_table_and_missing_origin(tmp_path: Path) -> None:
    write_toml(tmp_path, '[sources.a]\ntable = "order"\n')
    with pytest.raises(ConfigError) as err:
        Project.open(tmp_path)
    assert "sources.a.table" in str(err.value)
    write_toml(tmp_path, '[sources.a]\ntable = "orders"\n')
    with pytest.raises(ConfigError, match="exactly one of `path`"):
        Project.open(tmp_path)


def test_missing_file_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="personae init"):
        Project.open(tmp_path)
    write_toml(tmp_path, "[store\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        Project.open(tmp_path)
