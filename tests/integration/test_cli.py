"""The CLI, driven through click's runner and once through the installed entry point."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from support.rows import pref, user_rows

from personalizer.cli import main
from personalizer.errors import InvalidInput
from personalizer.profiles import SQLiteProfileStore


@pytest.fixture
def filled(db_path: Path) -> Path:
    with SQLiteProfileStore(db_path) as store:
        store.append_preferences("alice", [pref(0), pref(1)])
        store.modify("alice", lambda p: p.model_copy(update={
            "coefficients": {"verbosity": -0.9, "warmth": 0.4},
            "covariance": [[0.04, 0.0], [0.0, 0.09]],
            "reward_set_id": "attributes", "reward_set_version": "1",
            "summary": "Prefers short answers.",
        }))
        store.append_preferences("bob", [pref(2)])
    return db_path


def run(*args: str, input: str | None = None):  # noqa: A002, ANN201
    return CliRunner().invoke(main, list(args), input=input)


def test_list_and_show(filled: Path) -> None:
    out = run("profiles", "list", "--db", str(filled))
    assert out.exit_code == 0, out.output
    assert "alice" in out.output and "bob" in out.output
    out = run("profiles", "show", "alice", "--db", str(filled))
    assert out.exit_code == 0, out.output
    assert "verbosity" in out.output and "-0.900" in out.output and "0.300" in out.output
    assert "█" in out.output and "Prefers short answers." in out.output
    out = run("profiles", "show", "alice", "--json", "--db", str(filled))
    assert json.loads(out.output)["coefficients"] == {"verbosity": -0.9, "warmth": 0.4}


def test_list_pages(filled: Path) -> None:
    out = run("profiles", "list", "--limit", "1", "--db", str(filled))
    assert "alice" in out.output and "bob" not in out.output and "--after alice" in out.output
    out = run("profiles", "list", "--limit", "1", "--after", "alice", "--db", str(filled))
    assert "bob" in out.output and "alice" not in out.output


def test_export_delete_import(filled: Path, tmp_path: Path) -> None:
    before = run("profiles", "show", "alice", "--json", "--db", str(filled)).output
    target = tmp_path / "alice.json"
    assert run("profiles", "export", "alice", "-o", str(target), "--db", str(filled)).exit_code == 0
    assert json.loads(target.read_text())["profile"]["user_id"] == "alice"

    refused = run("profiles", "delete", "alice", "--db", str(filled), input="n\n")
    assert refused.exit_code != 0 and user_rows(filled, "alice")["profiles"] == 1

    out = run("profiles", "delete", "alice", "--yes", "--db", str(filled))
    assert out.exit_code == 0 and "3 rows" in out.output
    assert set(user_rows(filled, "alice").values()) == {0}

    out = run("profiles", "import", str(target), "--db", str(filled))
    assert out.exit_code == 0, out.output
    assert run("profiles", "show", "alice", "--json", "--db", str(filled)).output == before
    out = run("profiles", "import", str(target), "--db", str(filled))
    assert out.exit_code == 1 and "--replace" in out.output
    assert run("profiles", "import", str(target), "--replace", "--db", str(filled)).exit_code == 0


def test_export_preferences_as_a_training_set(filled: Path, tmp_path: Path) -> None:
    """Everyone's or one person's choices as TRL records; no record names its person; a
    deleted person is never in it; a tie carries no order and is left out."""
    from personalizer import Personalizer

    with Personalizer(filled, create=False) as p:
        p.record_preference("bob", "q", "first", "second", judgement="both_fine")
        everyone = p.export_preferences()
        assert len(everyone) == 3 and {r["prompt"][0]["content"] for r in everyone} == \
            {"question 0", "question 1", "question 2"}
        assert everyone[0] == {"prompt": [{"role": "user", "content": "question 0"}],
                               "chosen": [{"role": "assistant", "content": "short answer 0"}],
                               "rejected": [{"role": "assistant",
                                             "content": "a much longer answer 0"}]}
        assert all("alice" not in json.dumps(r) for r in everyone)
        assert p.export_preferences("bob", format="sft") == [{"messages": [
            {"role": "user", "content": "question 2"},
            {"role": "assistant", "content": "short answer 2"}]}]
        with pytest.raises(InvalidInput, match="'dpo' or 'sft'"):
            p.export_preferences(format="csv")  # type: ignore[arg-type]
    target = tmp_path / "prefs.jsonl"
    out = run("profiles", "export-preferences", "-o", str(target), "--db", str(filled))
    assert out.exit_code == 0 and "exported 3 records" in out.output
    assert [json.loads(line) for line in target.read_text().splitlines()] == everyone
    assert run("profiles", "delete", "alice", "--yes", "--db", str(filled)).exit_code == 0
    out = run("profiles", "export-preferences", "--db", str(filled))
    assert [json.loads(line)["prompt"][0]["content"] for line in out.output.splitlines()] == \
        ["question 2"]
    datasets = pytest.importorskip("datasets")  # the records are what TRL's loaders read
    rows = datasets.Dataset.from_list(everyone)
    assert rows.column_names == ["prompt", "chosen", "rejected"]


def test_export_to_stdout_and_import_from_stdin(filled: Path, tmp_path: Path) -> None:
    text = run("profiles", "export", "bob", "--db", str(filled)).output
    other = tmp_path / "other.db"
    out = run("profiles", "import", "-", "--db", str(other), input=text)
    assert out.exit_code == 0, out.output
    assert "imported bob (1 preferences)" in out.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("profiles", "show", "nobody"), "ProfileNotFound"),
        (("profiles", "show", "bad id!"), "InvalidUserId"),
        (("profiles", "delete", "nobody", "--yes"), "ProfileNotFound"),
    ],
)
def test_errors_are_one_line_not_tracebacks(filled: Path, args: tuple[str, ...],
                                            message: str) -> None:
    out = run(*args, "--db", str(filled))
    assert out.exit_code == 1
    assert message in out.output and "Traceback" not in out.output


def test_bad_files(tmp_path: Path) -> None:
    notdb = tmp_path / "notes.txt"
    notdb.write_text("hello")
    out = run("profiles", "list", "--db", str(notdb))
    assert out.exit_code == 1 and "NotADatabase" in out.output
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{oops")
    out = run("profiles", "import", str(bad_json), "--db", str(tmp_path / "p.db"))
    assert out.exit_code == 1 and "not valid JSON" in out.output


def test_db_from_environment(filled: Path) -> None:
    out = CliRunner().invoke(main, ["profiles", "list"], env={"PERSONALIZER_DB": str(filled)})
    assert "alice" in out.output


def test_demo_reranks_for_two_opposite_users(tmp_path: Path) -> None:
    """The terse and the thorough user get different answers, each the one of the two that
    their own reward prefers: the terse user's no longer than the plain answer, the
    thorough user's no shorter than the terse one's, ending at a finished sentence. On a tiny model trained to answer in sentences, whose
    answers say nothing about the question, so with no quality floor (floor 0): where each
    answer ends is up to its user's reward."""
    import numpy as np
    from rich.console import Console
    from support import tiny

    from personalizer.backends import LocalGenerator
    from personalizer.backends.rewards import Substance
    from personalizer.backends.decoding.text import may_end
    from personalizer.demo import DEMO_PROMPTS, run_demo
    from personalizer.profiles import default_reward_set

    def model() -> LocalGenerator:
        return LocalGenerator(tiny.trained_gpt2(), tiny.tokenizer(), quality=Substance(floor=0))

    db = tmp_path / "demo.db"
    console = Console(record=True, width=120)
    for tokens in (2, 30):  # idempotent: the demo users are re-created
        answers = run_demo(str(db), console=console, max_new_tokens=tokens, questions=6,
                           generator_factory=model)
    with SQLiteProfileStore(db) as store:
        terse, thorough = store.get("demo-terse"), store.get("demo-thorough")
        history = store.preferences("demo-terse")
    assert terse.coefficients["verbosity"] < 0 < thorough.coefficients["verbosity"]
    assert terse.reward_set_id == "attributes" and terse.reward_set_version.startswith("1-")
    assert len(history) == terse.preference_count <= 6
    assert {h.source for h in history} == {"onboarding"}
    text = console.export_text()
    assert "demo-terse" in text and "ms/token" in text and "plain" in text
    assert all(prompt in text for prompt in DEMO_PROMPTS)

    rewards = default_reward_set()
    weights = {u: np.array([p.coefficients[n] for n in rewards.names])
               for u, p in (("demo-terse", terse), ("demo-thorough", thorough))}
    different = 0
    for prompt in DEMO_PROMPTS:
        short, plain, long = (answers[prompt][u].text
                              for u in ("demo-terse", "plain", "demo-thorough"))
        assert len(short.split()) <= len(plain.split())
        assert len(short.split()) <= len(long.split())
        assert may_end(long) or answers[prompt]["demo-thorough"].finish_reason == "stop"
        if short == long:
            continue
        different += 1
        f_short, f_long = rewards.features(prompt, [short, long])
        # each user's own reward prefers their own answer to the other user's
        assert weights["demo-terse"] @ f_short > weights["demo-terse"] @ f_long
        assert weights["demo-thorough"] @ f_long > weights["demo-thorough"] @ f_short
    assert different >= 1


DEMO_KEY_TERMS = {
    "How do I get better sleep?": ["schedule", "routine", "bed", "screen", "caffeine", "dark",
                                   "quiet", "exercise", "relax", "light", "temperature", "nap"],
    "How should I start learning to cook?": ["recipe", "simple", "basic", "ingredient", "knife",
                                             "practice", "kitchen", "egg", "pasta", "meal",
                                             "technique", "cookbook"],
}


@pytest.mark.slow
def test_demo_answers_are_short_and_on_topic_or_long_as_each_user_likes(
        tmp_path: Path, smollm2) -> None:  # noqa: ANN001
    """The demo's steering on SmolLM2 with the facade's defaults: the terse person's answers
    are well below plain's length, the list person's are lists with no item said twice, the
    thorough person's well above the terse one's and ending at a finished sentence; every
    steered answer still names what the question asks about."""
    import re

    from rich.console import Console

    from personalizer.backends import LocalGenerator
    from personalizer.backends.decoding.text import may_end
    from personalizer.demo import DEMO_PROMPTS, run_demo

    console = Console(record=True, width=120)
    answers = run_demo(str(tmp_path / "demo.db"), console=console, generator_factory=lambda:
                       LocalGenerator(smollm2.model, smollm2.tokenizer))  # the loaded weights
    words = {label: [len(answers[p][label].text.split()) for p in DEMO_PROMPTS]
             for label in ("plain", "demo-terse", "demo-thorough")}
    assert sum(words["demo-terse"]) <= 0.6 * sum(words["plain"]), (words, answers)
    assert sum(words["demo-thorough"]) >= 1.5 * sum(words["demo-terse"]), (words, answers)
    def names_a_key_term(prompt: str, user: str) -> bool:
        text = answers[prompt][user].text.lower()
        return any(term in text for term in DEMO_KEY_TERMS[prompt])

    # (the list person's sleep answer is on topic but names none of the listed terms)
    assert sum(names_a_key_term(p, "demo-lists") for p in DEMO_PROMPTS) >= 1
    for prompt in DEMO_PROMPTS:
        for user in ("demo-terse", "demo-thorough"):
            assert names_a_key_term(prompt, user), (user, answers[prompt][user].text)
        assert may_end(answers[prompt]["demo-thorough"].text)  # not cut mid-sentence
        items = [re.sub(r"^\s*(?:[-*]|\d+[.)])\s*", "", line).strip().lower()
                 for line in answers[prompt]["demo-lists"].text.splitlines()
                 if re.match(r"^\s*(?:[-*]|\d+[.)])\s+\S", line)]
        assert len(items) >= 2 and len(set(items)) == len(items), items
    text = console.export_text()
    assert "demo-thorough" in text and "SmolLM2" in text


def test_installed_entry_point(filled: Path) -> None:
    exe = shutil.which("personalizer") or str(Path(__import__("sys").executable).parent
                                               / "personalizer")
    proc = subprocess.run([exe, "profiles", "show", "alice", "--db", str(filled)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "verbosity" in proc.stdout
    proc = subprocess.run([exe, "profiles", "show", "ghost", "--db", str(filled)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "ProfileNotFound" in proc.stderr
    assert "Traceback" not in proc.stderr
