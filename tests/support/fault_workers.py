"""A write racing a delete, for tests/integration/test_faults.py and bench/fuzz_race.py.

One handle loops ``record_preference("u", ...)`` while another loops ``delete_profile("u")``
on the same database. A write with ``create=True`` (the facade's) lands, on a fresh profile if
the user was deleted since it read; one with ``create=False`` lands or is refused as
``ProfileNotFound``. Anything else is a failure. Run as a script for separate processes::

    python tests/support/fault_workers.py write DB TRIES     # one JSON line: the writer's outcomes
    python tests/support/fault_workers.py delete DB STOPFILE # deletes until STOPFILE exists
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from personalizer import Personalizer, ProfileNotFound
from personalizer.profiles import ProfileLearner, default_reward_set, open_store

USER = "u"
CHOSEN, REJECTED = "Short.", "A much longer answer, with many more words in it than needed."


def write(db: str, tries: int, *, rewards: Any = None) -> dict[str, Any]:
    """``tries`` writes of user ``u``: every third through ``ProfileLearner.record_preference``
    with ``create=False``, the others through the facade (which creates the profile). Returns
    the outcome counts and, for each landed write, ``(try, create, preference_count)``."""
    rewards = rewards or default_reward_set()
    outcomes: Counter[str] = Counter()
    landed: list[tuple[int, bool, int]] = []
    with Personalizer(db, rewards=rewards) as p:
        learner = ProfileLearner(p.store, rewards)
        for i in range(tries):
            create = i % 3 != 2
            try:
                if create:
                    profile = p.record_preference(USER, f"q{i}", CHOSEN, REJECTED)
                else:
                    profile = learner.record_preference(USER, f"q{i}", CHOSEN, REJECTED,
                                                        create=False)
            except ProfileNotFound:
                outcomes["ProfileNotFound"] += 1
                continue
            except Exception as exc:  # noqa: BLE001 - the finding
                outcomes[f"{type(exc).__name__}: {str(exc)[:100]}"] += 1
                continue
            outcomes["landed"] += 1
            landed.append((i, create, profile.preference_count))
    return {"outcomes": dict(outcomes), "landed": landed}


def delete_until(db: str, stop: Callable[[], bool]) -> dict[str, int]:
    """Delete user ``u`` again and again until ``stop()``; the outcome counts."""
    outcomes: Counter[str] = Counter()
    with Personalizer(db) as p:
        while not stop():
            try:
                p.delete_profile(USER)
                outcomes["deleted"] += 1
            except ProfileNotFound:
                outcomes["ProfileNotFound"] += 1
            except Exception as exc:  # noqa: BLE001 - the finding
                outcomes[f"{type(exc).__name__}: {str(exc)[:100]}"] += 1
    return dict(outcomes)


def race_threads(db: str, tries: int, *, rewards: Any = None) -> dict[str, Any]:
    """The race in two threads of this process, each with its own handle."""
    done = threading.Event()
    deletes: dict[str, int] = {}

    def deleter() -> None:
        deletes.update(delete_until(db, done.is_set))

    thread = threading.Thread(target=deleter)
    thread.start()
    try:
        result = write(db, tries, rewards=rewards)
    finally:
        done.set()
        thread.join()
    return {**result, "deletes": deletes}


def race_processes(db: str, tries: int, workdir: Path) -> dict[str, Any]:
    """The race in two processes (this file run as a script)."""
    import subprocess

    stop = workdir / f"stop-{time.monotonic_ns()}"
    me = [sys.executable, __file__]
    deleter = subprocess.Popen([*me, "delete", db, str(stop)], stdout=subprocess.PIPE,
                               text=True)
    try:
        assert deleter.stdout is not None and deleter.stdout.readline() == "started\n"
        writer = subprocess.run([*me, "write", db, str(tries)], capture_output=True, text=True,
                                timeout=600, check=True)
    finally:
        stop.touch()
        out, _ = deleter.communicate(timeout=120)
    assert deleter.returncode == 0
    return {**json.loads(writer.stdout), "deletes": json.loads(out)}


def history(db: str) -> list[str] | None:
    """The prompts of user ``u``'s stored preferences after a race, or None when the race
    ended on a delete."""
    with open_store(db) as store:
        try:
            return [p.prompt for p in store.preferences("u")]
        except LookupError:
            return None


def check(result: dict[str, Any], history: list[str] | None) -> None:
    """The race's invariants: no outcome but landed or ProfileNotFound (and a create=True
    write never refused); each landed write saw the previous one's history plus its own, or
    only its own on a fresh profile (a create=True write just after a delete): nothing from
    before a delete came back; the stored ``history`` (None: no profile) is exactly the
    landed writes since the last fresh one."""
    outcomes, deletes = result["outcomes"], result["deletes"]
    assert set(outcomes) <= {"landed", "ProfileNotFound"}, outcomes
    assert set(deletes) <= {"deleted", "ProfileNotFound"}, deletes
    previous = 0
    since_fresh: list[str] = []
    for i, create, count in result["landed"]:
        if count == 1 and create:
            since_fresh = []
        else:
            assert count == previous + 1, (i, create, count, previous)
        since_fresh.append(f"q{i}")
        previous = count
    refused = {i for i in range(1 + max([i for i, _, _ in result["landed"]] or [0]))} - \
        {i for i, _, _ in result["landed"]}
    assert all(i % 3 == 2 for i in refused), "a create=True write was refused"
    if history is not None:
        assert history == since_fresh


if __name__ == "__main__":
    cmd, db, arg = sys.argv[1:4]
    if cmd == "write":
        print(json.dumps(write(db, int(arg))))
    elif cmd == "delete":
        with Personalizer(db):  # the schema is there before the writer starts
            pass
        print("started", flush=True)
        print(json.dumps(delete_until(db, Path(arg).exists)))
    else:
        raise SystemExit(f"unknown command {cmd}")
