"""The ``personalizer`` command line: a thin layer, each command one call into the API."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from . import __version__
from .client import Personalizer
from .errors import PersonalizerError
from .render import profile_view

DB_OPTION = click.option(
    "--db",
    "db",
    envvar="PERSONALIZER_DB",
    default="profiles.db",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="SQLite profile database (env: PERSONALIZER_DB).",
)


class _Group(click.Group):
    """Shows a PersonalizerError as one line on stderr (exit 1), not a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PersonalizerError as exc:
            raise click.ClickException(f"{type(exc).__name__}: {exc}") from None


def _console() -> Console:
    return Console(soft_wrap=False)


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="personalizer")
def main() -> None:
    """Personalize LLM answers per user at decoding time."""


@main.group(cls=_Group)
def profiles() -> None:
    """Inspect, export, import and delete user profiles."""


@profiles.command("list")
@DB_OPTION
@click.option("--limit", default=50, show_default=True, help="Profiles per page.")
@click.option("--after", default=None, help="Start after this user id (next page).")
def list_profiles(db: str, limit: int, after: str | None) -> None:
    """List stored profiles, in user-id order.

    Example: personalizer profiles list --db profiles.db --limit 20
    """
    with Personalizer(db) as p:
        page = p.list_profiles(limit=limit, after=after)
    table = Table("user", "preferences", "coefficients", "version", "updated (UTC)")
    for prof in page.profiles:
        table.add_row(prof.user_id, str(prof.preference_count), str(len(prof.coefficients)),
                      str(prof.version), f"{prof.updated_at:%Y-%m-%d %H:%M}")
    console = _console()
    console.print(table)
    if page.next_after:
        console.print(f"more: --after {page.next_after}")


@profiles.command("show")
@DB_OPTION
@click.argument("user")
@click.option("--json", "as_json", is_flag=True, help="Print the profile as JSON.")
def show(db: str, user: str, as_json: bool) -> None:
    """Show one profile: coefficients with a bar each, uncertainty and summary.

    Example: personalizer profiles show alice
    """
    with Personalizer(db) as p:
        profile = p.profile(user)
    if as_json:
        click.echo(profile.model_dump_json(indent=2))
    else:
        _console().print(profile_view(profile))


@profiles.command("export")
@DB_OPTION
@click.argument("user")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True),
              help="Write to this file instead of standard output.")
def export(db: str, user: str, output: str | None) -> None:
    """Export a profile and its full preference history as JSON.

    Example: personalizer profiles export alice -o alice.json
    """
    with Personalizer(db) as p:
        text = json.dumps(p.export_profile(user), indent=2, ensure_ascii=False)
    if output:
        Path(output).write_text(text + "\n", encoding="utf-8")
        click.echo(f"exported {user} to {output}", err=True)
    else:
        click.echo(text)


@profiles.command("import")
@DB_OPTION
@click.argument("file", type=click.File("rb"))
@click.option("--replace", is_flag=True, help="Overwrite an existing profile of that user.")
def import_(db: str, file: Any, replace: bool) -> None:
    """Import a profile from an export file ('-' reads standard input).

    Example: personalizer profiles import alice.json --replace
    """
    with Personalizer(db) as p:
        profile = p.import_profile(file.read(), replace=replace)
    click.echo(f"imported {profile.user_id} ({profile.preference_count} preferences)")


@profiles.command("delete")
@DB_OPTION
@click.argument("user")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def delete(db: str, user: str, yes: bool) -> None:
    """Delete a profile and every stored row of that user.

    Example: personalizer profiles delete alice --yes
    """
    if not yes and not click.confirm(f"Delete every stored row of {user!r}?",
                                     default=False, err=True):
        raise click.ClickException("not deleted (pass --yes to skip this question)")
    with Personalizer(db) as p:
        removed = p.delete_profile(user)
    click.echo(f"deleted {user}: {removed} rows removed")


@main.command()
@DB_OPTION
def demo(db: str) -> None:
    """Run the demo: SmolLM2 answers, reranked for two users with opposite tastes.

    Example: personalizer demo --db demo.db
    """
    from .demo import run_demo

    run_demo(db, console=_console())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
