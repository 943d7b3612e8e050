"""Onboarding as a person meets it: the CLI's questions shown in full and numbered, no prompt
asked twice in a session, and no option in the shipped bank that is no answer to its prompt.
On real SQLite files, through click's runner and the public Personalizer / Onboarding."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from personalizer import Personalizer
from personalizer.cli import main
from personalizer.profiles import SimulatedUser, SQLiteProfileStore, default_reward_set
from personalizer.profiles.onboarding.bank import question_bank
from personalizer.profiles.onboarding.pool import answers_question
from personalizer.profiles.onboarding.simulate import taste_vector

WIDTH = 60


@pytest.fixture(scope="module")
def rewards():
    return default_reward_set()


def flat(text: str) -> str:
    return " ".join(text.split())


def onboard(db: Path, *args: str, input: str | None = None):
    return CliRunner().invoke(main, ["onboard", *args, "--db", str(db)], input=input,
                              env={"COLUMNS": str(WIDTH)})


def test_cli_shows_every_option_in_full_wrapped_to_the_terminal(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    out = onboard(db, "alice", "--simulate", "thorough", "--questions", "4")
    assert out.exit_code == 0, out.output
    with SQLiteProfileStore(db) as store:
        shown = [text for p in store.preferences("alice") for text in (p.chosen, p.rejected)]
    assert len(shown) == 8 and max(len(text) for text in shown) > 160  # the old cut
    assert "…" not in out.output
    for text in shown:  # every word of every option, in order
        assert flat(text) in flat(out.output), text
    assert max(len(line.rstrip()) for line in out.output.splitlines()) <= WIDTH


def test_cli_options_are_never_read_as_markup(tmp_path: Path) -> None:
    pool_text = "- [bold]not bold[/bold] and [link=x]no link[/link]\n- a second line"
    with Personalizer(db=tmp_path / "p.db", rewards=default_reward_set()) as p:
        session = p.onboarding("mark", pool=[{"prompt": "Which [b]one[/b]?",
                                              "responses": [pool_text, "Plain."]}])
        question = session.next_question()
    from rich.console import Console

    from personalizer.cli import _question_view

    console = Console(width=WIDTH, record=True)
    console.print(_question_view(question, 1))
    text = console.export_text()
    assert "Question 1 of 1 — Which [b]one[/b]?" in text
    assert "[bold]not bold[/bold] and [link=x]no link[/link]" in text
    assert "  1) - [bold]" in text and "\n     - a second line" in text  # its lines kept


def test_cli_says_question_n_of_m_and_goes_on_counting_after_a_resume(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    out = onboard(db, "bob", "--questions", "4", input="1\n")  # then the input ends
    assert out.exit_code == 1  # aborted at the second question; the first answer is kept
    assert re.findall(r"Question (\d+) of (\d+)", out.output) == [("1", "4"), ("2", "4")]
    out = onboard(db, "bob", "--questions", "4", input="2\n1\n=\n\n")
    assert out.exit_code == 0, out.output
    assert re.findall(r"Question (\d+) of (\d+)", out.output) == [
        ("2", "4"), ("3", "4"), ("4", "4")]
    assert "complete (4 answers)" in out.output


def test_question_number_and_max_questions_on_the_public_api(tmp_path: Path,
                                                             rewards) -> None:
    with Personalizer(db=tmp_path / "p.db", rewards=rewards) as p:
        session = p.onboarding("carol", max_questions=5)
        assert session.max_questions == 5
        numbers = []
        while not session.done:
            q = session.next_question()
            assert session.next_question().number == q.number  # shown again, same number
            numbers.append(q.number)
            session.answer(q.id, 0)
        assert numbers == list(range(1, len(numbers) + 1)) and 3 <= len(numbers) <= 5
        resumed = p.onboarding("carol", max_questions=9)  # the stored session's limit holds
        assert resumed.max_questions == 5
        # a pool of three pairs asks at most three, whatever max_questions says
        small = p.onboarding("dave", max_questions=10, pool=[
            {"prompt": "Hi?", "responses": ["Hello.", "Hello there!", "Hi, friend."]}])
        assert small.max_questions == 3
        assert [q.number for q in _asked(small)] == [1, 2, 3]


def _asked(session):
    questions = []
    while not session.done:
        questions.append(session.next_question())
        session.answer(questions[-1].id, 0)
    return questions


@pytest.mark.parametrize(("taste", "beta"), [("terse", 4.0), ("thorough", 2.0),
                                             ("lists", 2.0), ("warm", 0.05)])
def test_no_prompt_is_asked_twice_in_a_session(tmp_path: Path, rewards, taste: str,
                                               beta: float) -> None:
    """Whoever answers, clear or at random (beta 0.05), and wherever the session stops:
    every question of a session is about another prompt."""
    with Personalizer(db=tmp_path / "p.db", rewards=rewards) as p:
        user = SimulatedUser(taste_vector(taste, rewards.names) * 2.0, beta=beta, seed=3)
        session = p.onboarding(taste, max_questions=12)
        session.run(user.chooser(rewards))
        prompts = [pref.prompt for pref in p.store.preferences(taste)]
    assert len(prompts) >= 5
    assert len(set(prompts)) == len(prompts), prompts


def test_a_prompt_comes_again_only_once_every_prompt_was_asked(tmp_path: Path,
                                                                rewards) -> None:
    tech = [item.prompt for item in question_bank(["tech"])]
    with Personalizer(db=tmp_path / "p.db", rewards=rewards) as p:
        session = p.onboarding("erin", domains=["tech"], max_questions=len(tech) + 3,
                               stop_undecided=0.0, stop_gain=0.0)
        prompts = [q.prompt for q in _asked(session)]
    assert len(prompts) == len(tech) + 3
    assert sorted(prompts[:len(tech)]) == sorted(tech)  # each prompt once, then again


def test_every_model_written_option_of_the_bank_answers_its_prompt() -> None:
    assert not answers_question("How can I make a small apartment feel bigger?",
                                "It's a delicate balance of aesthetics and practicality.")
    assert answers_question("How can I make a small apartment feel bigger?",
                            "Use mirrors: a small room looks twice its size.")
    assert answers_question("How do I stop procrastinating on chores?",
                            "Procrastination fades once a task takes two minutes.")
    assert not answers_question("Why is the sky blue?", "The answer lies in the intricate "
                                "dance of light and color.")
    # the eight hand-written items of the first bank (domain "general") are kept as they
    # were: terse answers written by a person need not repeat the question's words
    model_written = [item for item in question_bank() if item.domain != "general"]
    assert len(model_written) == 32
    for item in model_written:
        for option in item.responses:
            assert answers_question(item.prompt, option), (item.prompt, option)
    options = {option for item in question_bank() for option in item.responses}
    assert "It's a delicate balance of aesthetics and practicality." not in options
