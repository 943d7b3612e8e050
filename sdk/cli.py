"""The ``personalizer`` command line: a thin layer, each command one call into the API."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from . import __version__
from .client import Personalizer
from .errors import InvalidInput, MissingDependency, PersonalizerError
from .render import profile_view, summary_note

DB_OPTION = click.option(
    "--db",
    "db",
    envvar="PERSONALIZER_DB",
    default="profiles.db",
    show_default=True,
    help="Profile store: an SQLite file, or a postgresql://user:password@host/dbname URL "
    "(env: PERSONALIZER_DB).",
)


class _Group(click.Group):
    """Shows a PersonalizerError as one line on stderr, not a traceback: exit 1, or 2 for a
    missing optional dependency (the line says what to install)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PersonalizerError as exc:
            error = click.ClickException(f"{type(exc).__name__}: {exc}")
            if isinstance(exc, MissingDependency):
                error.exit_code = 2
            raise error from None


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
    with Personalizer(db, create=False) as p:
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
    with Personalizer(db, create=False) as p:
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
    with Personalizer(db, create=False) as p:
        text = json.dumps(p.export_profile(user), indent=2, ensure_ascii=False)
    if output:
        try:
            Path(output).write_text(text + "\n", encoding="utf-8")
        except (OSError, ValueError) as exc:  # no such folder, not writable, disk full
            raise InvalidInput(f"cannot write the export to {output!r}: "
                               f"{getattr(exc, 'strerror', None) or exc}") from None
        click.echo(f"exported {user} to {output}", err=True)
    else:
        click.echo(text)


@profiles.command("export-preferences")
@DB_OPTION
@click.option("--user", default=None, help="One person's history (default: everyone's).")
@click.option("--format", "fmt", type=click.Choice(["dpo", "sft"]), default="dpo",
              show_default=True, help="TRL's preference (dpo) or chat (sft) records.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True),
              help="Write JSON lines to this file instead of standard output.")
def export_preferences(db: str, user: str | None, fmt: str, output: str | None) -> None:
    """Export preference histories as a training set (JSON lines TRL reads directly).

    No record names its person. Training on people's answers is your app's choice to make
    and to tell them about: a person deleted later stays in a model trained on them until
    it is trained again.

    Example: personalizer profiles export-preferences --format dpo -o prefs.jsonl
    """
    with Personalizer(db, create=False) as p:
        records = p.export_preferences(user, format=fmt)  # type: ignore[arg-type]
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    if output:
        try:
            Path(output).write_text(text, encoding="utf-8")
        except (OSError, ValueError) as exc:
            raise InvalidInput(f"cannot write to {output!r}: "
                               f"{getattr(exc, 'strerror', None) or exc}") from None
        click.echo(f"exported {len(records)} records to {output}", err=True)
    else:
        click.echo(text, nl=False)


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
    with Personalizer(db, create=False) as p:
        removed = p.delete_profile(user)
    click.echo(f"deleted {user}: {removed} rows removed")


@profiles.command("summary")
@DB_OPTION
@click.argument("user")
@click.option("--set", "text", default=None, metavar="TEXT",
              help="Write the summary yourself ('' removes it); the summarizer never "
                   "overwrites a summary written this way.")
@click.option("--edit", is_flag=True, help="Edit the summary in $EDITOR.")
def summary(db: str, user: str, text: str | None, edit: bool) -> None:
    """Show a profile's summary, or write it yourself.

    Examples: personalizer profiles summary alice;
    personalizer profiles summary alice --set "Prefers short answers with an example."
    """
    if text is not None and edit:
        raise click.UsageError("pass --set TEXT or --edit, not both")
    with Personalizer(db, create=text is not None or edit) as p:
        if edit:
            edited = click.edit(p.profile(user).summary)
            if edited is None:
                click.echo("summary unchanged (editor closed without saving)", err=True)
                return
            text = edited
        profile = p.profile(user) if text is None else p.set_summary(user, text)
    if not profile.summary:
        click.echo(f"{user} has no summary yet")
        return
    click.echo(profile.summary)
    click.echo(f"({summary_note(profile)})", err=True)


def _question_view(question: Any, of: int) -> RenderableType:
    """An onboarding question as a person reads it: "Question N of M", the prompt, and each
    option in full (its own lines kept), wrapped to the terminal under its number, never
    cut. Texts are shown as they are, never read as markup."""
    options = Table.grid(padding=(0, 1))
    options.add_column(no_wrap=True)
    options.add_column(overflow="fold")
    for i, option in enumerate(question.options, start=1):
        options.add_row(Text(f"  {i})", style="cyan"), Text(option.strip()))
    head = Text.assemble("\n", (f"Question {question.number} of {of}", "bold"), " — ",
                         question.prompt)
    return Group(head, options)


@main.command()
@DB_OPTION
@click.argument("user")
@click.option("--simulate", "taste", default=None,
              help="Answer for a simulated user of this taste: terse, thorough, lists, warm, "
                   "technical, or two at once joined by '+' (terse+warm).")
@click.option("--questions", default=10, show_default=True, help="At most this many.")
@click.option("--seed", default=0, show_default=True, help="Seed of the simulated answers.")
@click.option("--restart", is_flag=True, help="Start over (earlier answers are kept).")
@click.option("--domain", "domains", multiple=True,
              help="Ask only the question bank's prompts of this domain (repeatable): "
                   "general, everyday, work, tech, learning.")
def onboard(db: str, user: str, taste: str | None, questions: int, seed: int,
            restart: bool, domains: tuple[str, ...]) -> None:
    """Onboard USER: pairwise questions chosen by active learning.

    Answer 1 or 2; 1+ / 2+ for "much better", 1- / 2- for "slightly better", = for "both
    fine", 0 for "neither" (then say why, if you like: your words reach your summary).

    The session is saved after every answer: run the command again to resume.

    Example: personalizer onboard alice --simulate terse+warm
    """
    from personalizer.profiles import SimulatedUser, default_reward_set
    from personalizer.profiles.onboarding.simulate import taste_vector

    rewards = default_reward_set()
    simulated = None
    if taste is not None:
        simulated = SimulatedUser(taste_vector(taste, rewards.names), beta=2.0, seed=seed)
    console = _console()
    with Personalizer(db, rewards=rewards) as p:
        session = p.onboarding(user, max_questions=questions, restart=restart,
                               domains=list(domains) or None)
        simulate = None if simulated is None else simulated.chooser(rewards)

        def ask(q: Any) -> Any:
            console.print(_question_view(q, session.max_questions))
            if simulate is not None:
                choice = simulate(q)
                console.print(f"  → {choice + 1} (simulated '{taste}' user)")
                return choice
            reply = _REPLIES[click.prompt("  Which do you prefer?", show_choices=True,
                                          type=click.Choice(list(_REPLIES)))]
            if reply not in ("both_fine", "neither"):
                return reply
            why = click.prompt("  Why? (optional, Enter to skip)", default="",
                               show_default=False).strip()
            return reply, None, why or None

        profile = session.run(ask)
        console.print(f"\n[bold]Onboarding of {user} complete[/] "
                      f"({len(session.state.asked)} answers).\n")
        console.print(profile_view(profile))


# The onboarding prompt's replies and the answers they stand for.
_REPLIES: dict[str, Any] = {"1": 0, "2": 1, "1+": (0, "much"), "2+": (1, "much"),
                            "1-": (0, "slightly"), "2-": (1, "slightly"), "=": "both_fine",
                            "0": "neither"}


@main.group(cls=_Group)
def experts() -> None:
    """Attribute experts: per-person proxy-tuning for a local model."""


@experts.command("train")
@click.option("--model", required=True,
              help="The base model: a hub id or folder (a causal LM whose attention has "
                   "q_proj, k_proj, v_proj and o_proj, as Llama, Mistral, Qwen and SmolLM2 "
                   "do).")
@click.option("--gguf-file", default=None, help="A GGUF file inside --model's folder.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the experts (<attribute>.safetensors); existing ones are "
                   "kept, so a stopped run resumes.")
@click.option("--attribute", "attributes", multiple=True,
              type=click.Choice(["verbosity", "structure", "warmth", "formality"]),
              help="Train this expert (repeatable; default: all four).")
@click.option("--pairs", "pairs_file", type=click.File("rb"), default=None,
              help="Opt-in: train on these DPO records (JSON lines, e.g. from `personalizer "
                   "profiles export-preferences`) instead of the model's own answers to "
                   "the project's questions.")
@click.option("--epochs", type=float, default=2.0, show_default=True)
@click.option("--device", default="cpu", show_default=True,
              help="cpu, cuda, ... (a GPU is advised: SmolLM2-135M took 5-15 minutes per "
                   "expert on 2 CPU cores).")
def train_experts(model: str, gguf_file: str | None, out: Path, attributes: tuple[str, ...],
                  pairs_file: Any, epochs: float, device: str) -> None:
    """Train attribute experts for your own base model (needs the [experts] extra).

    Example: personalizer experts train --model HuggingFaceTB/SmolLM2-360M-Instruct --out experts/
    """
    from personalizer._optional import require
    from personalizer.backends import LocalGenerator
    from personalizer.backends.experts.training import STYLES
    from personalizer.backends.experts.training import train_experts as train

    for module in ("peft", "trl", "datasets"):  # before minutes of loading and answering
        require(module, extra="experts", feature="training experts")
    records = None
    if pairs_file is not None:
        try:
            records = [json.loads(line) for line in pairs_file.read().decode("utf-8")
                       .splitlines() if line.strip()]
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidInput(f"--pairs is not JSON lines: {exc}") from None
    gen = LocalGenerator(model, gguf_file=gguf_file, device=device, experts=None,
                         dtype="float32" if device == "cpu" else "bfloat16")
    train(gen, out, attributes or tuple(STYLES), records=records, epochs=epochs,
          progress=lambda line: click.echo(line, err=True))
    click.echo(f"experts in {out}: LocalGenerator(..., experts=ExpertSet.load({str(out)!r}))")


@main.group(cls=_Group)
def features() -> None:
    """Features learned from your app's own users, next to the built-in attributes."""


@features.command("learn")
@DB_OPTION
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The features file to write (safetensors).")
@click.option("--features", "n_features", default=1, show_default=True,
              help="How many features to learn (1-8).")
@click.option("--min-users", default=50, show_default=True,
              help="Refuse with fewer people (3+ choices each) in the store.")
def learn(db: str, out: Path, n_features: int, min_users: int) -> None:
    """Learn features from every stored person's choices and write them to --out.

    Then serve with the features setting (PERSONALIZER_FEATURES=FILE, or
    rewards=extended_reward_set(FILE) in Python): profiles migrate at their next answer.

    Example: personalizer features learn --db app.db --out features.safetensors
    """
    from personalizer.profiles import default_reward_set

    with Personalizer(db, rewards=default_reward_set()) as p:
        report = p.learn_features(out, n_features=n_features, min_users=min_users)
    click.echo(f"learned {', '.join(report.features)} from {report.users} people "
               f"({report.comparisons} choices) into {out}")
    click.echo(f"their held-out choices ({report.held_out}) predicted: attributes "
               f"{report.accuracy_base:.3f}, with the learned features "
               f"{report.accuracy_learned:.3f}")
    if report.accuracy_learned <= report.accuracy_base:
        click.echo("the learned features did not predict your users' held-out choices "
                   "better than the attributes alone: keep serving the attributes")
    click.echo(f"serve with PERSONALIZER_FEATURES={out} (reward set version "
               f"{report.reward_set_version})")


@main.command()
@click.option("--config", type=click.Path(dir_okay=False, exists=True), default=None,
              help="A settings TOML file (else $PERSONALIZER_CONFIG and PERSONALIZER_*).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8000, show_default=True, help="Port to bind.")
@click.option("--workers", default=1, show_default=True, help="Worker processes.")
def serve(config: str | None, host: str, port: int, workers: int) -> None:
    """Serve the OpenAI-compatible gateway and the profile endpoints (extra: server).

    Example: PERSONALIZER_GENERATOR=smollm2 personalizer serve --port 8000
    """
    import os

    from .server import serve as run

    if config is not None:  # every worker reads the same file
        os.environ["PERSONALIZER_CONFIG"] = str(Path(config).resolve())
    run(host=host, port=port, workers=workers)


@main.command()
@DB_OPTION
def demo(db: str) -> None:
    """Run the demo: four simulated people onboard, then SmolLM2 answers steered for each.

    Example: personalizer demo --db demo.db
    """
    from .demo import run_demo

    run_demo(db, console=_console())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
