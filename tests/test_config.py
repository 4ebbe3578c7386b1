from dataclasses import dataclass, field

import pytest

from vidfm.config import apply_overrides, config_from_dict, load_config, save_config, to_dict


@dataclass
class Inner:
    depth: int = 4
    ratio: float = 0.9
    name: str = "tube"
    size: tuple[int, int] = (8, 8)
    scale: float | None = None


@dataclass
class Outer:
    inner: Inner = field(default_factory=Inner)
    flag: bool = False
    tags: list[str] = field(default_factory=list)


def test_overrides_are_typed_and_nested():
    cfg = apply_overrides(
        Outer(),
        ["inner.depth=2", "inner.ratio=0.75", "flag=true", "inner.name=1e-3", "inner.size=[4,6]", "tags=a,b"],
    )
    assert cfg.inner.depth == 2 and isinstance(cfg.inner.depth, int)
    assert cfg.inner.ratio == 0.75
    assert cfg.flag is True
    assert cfg.inner.name == "1e-3"  # a str field keeps the raw text
    assert cfg.inner.size == (4, 6)
    assert cfg.tags == ["a", "b"]
    assert Outer().inner.depth == 4  # the original is untouched


def test_optional_and_errors():
    assert apply_overrides(Outer(), ["inner.scale=0.5"]).inner.scale == 0.5
    assert apply_overrides(Outer(inner=Inner(scale=1.0)), ["inner.scale=none"]).inner.scale is None
    with pytest.raises(KeyError, match="unknown key inner.dpeth; did you mean inner.depth?"):
        apply_overrides(Outer(), ["inner.dpeth=2"])
    with pytest.raises(ValueError):
        apply_overrides(Outer(), ["inner.depth=2.5"])
    with pytest.raises(ValueError, match="key.path=value"):
        apply_overrides(Outer(), ["inner.depth"])
    with pytest.raises(KeyError, match="no field"):
        config_from_dict(Outer, {"innr": {}})


def test_yaml_round_trip(tmp_path):
    cfg = apply_overrides(Outer(), ["inner.depth=3", "tags=[x]"])
    save_config(cfg, tmp_path / "config.yaml")
    again = load_config(Outer, tmp_path / "config.yaml")
    assert again == cfg
    assert to_dict(again)["inner"]["size"] == [8, 8]
