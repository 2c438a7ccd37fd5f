"""Every command of the CLI, and every option and argument a person types, says what it is for."""

from __future__ import annotations

from collections.abc import Iterator

import click

from spreadedge.cli import main


def _commands(command: click.Command, path: str = "spreadedge") -> Iterator[tuple[str, click.Command]]:
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from _commands(sub, f"{path} {name}")


def test_every_command_says_what_it_does() -> None:
    undocumented = [path for path, command in _commands(main) if not (command.help or command.short_help)]
    assert undocumented == []


def test_every_option_says_what_it_is_for() -> None:
    undocumented = [
        f"{path} {'/'.join(param.opts)}"
        for path, command in _commands(main)
        for param in command.params
        if isinstance(param, click.Option) and not param.hidden and not param.help
    ]
    assert undocumented == []
