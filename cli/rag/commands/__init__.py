"""CLI commands. Each module defines one command; ``register`` adds them all."""

from __future__ import annotations

import importlib

import typer

# Module name -> command name. A command module exposes ``command(...)``.
COMMANDS = {
    "index": "index",
    "query": "query",
    "status": "status",
    "rerank": "rerank",
    "ask": "ask",
    "eval": "eval",
    "serve": "serve",
    "reindex": "reindex",
    "rollback": "rollback",
    "mcp": "mcp",
}


def register(app: typer.Typer) -> None:
    for module_name, command_name in COMMANDS.items():
        try:
            module = importlib.import_module(f"rag.commands.{module_name}_cmd")
        except ModuleNotFoundError as exc:
            if exc.name == f"rag.commands.{module_name}_cmd":
                continue  # command not built yet
            raise
        app.command(command_name, help=module.command.__doc__)(module.command)
