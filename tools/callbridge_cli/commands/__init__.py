"""Command groups: one module per group, each exposing ``app`` (a typer.Typer); see docs/cli.md."""
