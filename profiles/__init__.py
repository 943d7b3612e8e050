"""Per-user profiles: data models, the store seam, its embedded SQLite default and PostgreSQL,
learning, onboarding and summaries.

The folders follow the architecture: ``store/`` (the SQL stores and their schemas),
``learning/`` (the posterior math, the learner, priors, learned features) and ``onboarding/``
(the session, the question bank and pools, simulated people); the models, the store seam
(``base``), the export format, the profile in the prompt (``conditioning``), summaries and the
default reward set (``rewards``) sit at the top.

>>> from personalizer.profiles import SQLiteProfileStore, Preference, open_store
"""

from .base import PopulationSums, ProfilePage, ProfileStore
from .conditioning import BLOCK_END, BLOCK_START, condition, profile_block, profile_request
from .export import EXPORT_SCHEMA, EXPORT_SCHEMA_VERSION, ProfileExport, parse_export
from .learning.app_features import ExtendedRewardSet, LearnedFeatures, extended_reward_set
from .learning.learner import ProfileLearner
from .learning.posterior import Posterior
from .models import Judgement, OnboardingState, Preference, Profile, validate_user_id
from .onboarding.bank import PoolItem, Question, generate_pool, question_bank
from .onboarding.session import Onboarding
from .onboarding.simulate import TASTES, SimulatedUser
from .rewards import default_reward_set
from .store.postgres import PostgresProfileStore
from .store.sql import SQLProfileStore
from .store.sqlite import DEFAULT_DB, SQLiteProfileStore, default_db_path
from .store.stores import open_store
from .store.transaction import UserTransaction
from .summaries import Summarizer, SummarizerSettings

__all__ = [
    "BLOCK_END",
    "BLOCK_START",
    "DEFAULT_DB",
    "EXPORT_SCHEMA",
    "EXPORT_SCHEMA_VERSION",
    "ExtendedRewardSet",
    "Judgement",
    "LearnedFeatures",
    "Onboarding",
    "OnboardingState",
    "PoolItem",
    "PopulationSums",
    "Posterior",
    "PostgresProfileStore",
    "Preference",
    "Profile",
    "ProfileExport",
    "ProfileLearner",
    "ProfilePage",
    "ProfileStore",
    "Question",
    "SQLProfileStore",
    "SQLiteProfileStore",
    "SimulatedUser",
    "Summarizer",
    "SummarizerSettings",
    "TASTES",
    "UserTransaction",
    "condition",
    "default_db_path",
    "default_reward_set",
    "extended_reward_set",
    "generate_pool",
    "open_store",
    "parse_export",
    "profile_block",
    "profile_request",
    "question_bank",
    "validate_user_id",
]
