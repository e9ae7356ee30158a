"""A settings dataclass as a command line (lib/core/params.py): typed flags, strict booleans,
optional fields left out, and back to the same dataclass."""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from lib.core.errors import UserError
from lib.core.params import OneLineParser, add_settings_arguments, settings_argv, settings_from_args


@dataclass
class Settings:
    name: str = "x"
    steps: int = 0
    rate: float = 0.5
    fast: bool = False
    limit: int | None = None  # None = someone else's value
    scale: float | None = None
    label: str | None = None
    strict: bool | None = None


def parse(argv: list[str]) -> Settings:
    return settings_from_args(Settings, add_settings_arguments(OneLineParser(), Settings).parse_args(argv))


def test_typed_flags_and_optional_fields_round_trip():
    assert parse([]) == Settings()
    got = parse(["--steps", "3", "--rate=2", "--fast", "--limit", "7", "--scale", "0.25", "--label=-dash-first",
                 "--no-strict"])
    assert got == Settings(steps=3, rate=2.0, fast=True, limit=7, scale=0.25, label="-dash-first", strict=False)
    assert isinstance(got.rate, float) and isinstance(got.limit, int)
    assert parse(settings_argv(got)) == got
    # only what differs from the defaults is written; a value may start with a dash
    assert settings_argv(Settings(label="-x", fast=True)) == ["--fast", "--label=-x"]
    assert settings_argv(Settings(fast=False, strict=True)) == ["--strict"]


def test_mistakes_are_one_line_naming_the_flag():
    for argv, said in [(["--fast", "maybe"], "'maybe' is not a boolean"), (["--limit", "many"], "invalid int value"),
                       (["--no-fast", "1"], "--no-fast takes no value"), (["--sped", "1"], "unrecognized arguments")]:
        with pytest.raises(UserError, match=said) as e:
            parse(argv)
        assert "\n" not in str(e.value)


def test_what_has_no_command_line_form_is_refused():
    @dataclass
    class WithList:
        items: list = field(default_factory=list)

    with pytest.raises(TypeError, match="WithList.items"):
        add_settings_arguments(OneLineParser(), WithList)

    @dataclass
    class Required:
        n: int | None = 3

    with pytest.raises(ValueError, match="Required.n=None cannot be written"):
        settings_argv(Required(n=None))
