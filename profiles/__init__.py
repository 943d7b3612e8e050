"""Per-user profiles: data models, the store seam, its embedded SQLite default and PostgreSQL,
learning, onboarding and summaries.

>>> from personalizer.profiles import SQLiteProfileStore, Preference, open_store
"""

from .base import PopulationSums, ProfilePage, ProfileStore
from .conditioning import BLOCK_END, BLOCK_START, condition, profile_block, profile_request
from .export import EXPORT_SCHEMA, EXPORT_SCHEMA_VERSION, ProfileExport, parse_export
from .learner import ProfileLearner
from .learning import Posterior
from .models import Judgement, OnboardingState, Preference, Profile, validate_user_id
from .onboarding import (
    Onboarding,
    PoolItem,
    Question,
    default_reward_set,
    generate_pool,
    question_bank,
)
from .postgres import PostgresProfileStore
from .simulate import TASTES, SimulatedUser
from .sql import SQLProfileStore, UserTransaction
from .sqlite import DEFAULT_DB, SQLiteProfileStore, default_db_path
from .stores import open_store
from .summaries import Summarizer, SummarizerSettings

__all__ = [
    "BLOCK_END",
    "BLOCK_START",
    "DEFAULT_DB",
    "EXPORT_SCHEMA",
    "EXPORT_SCHEMA_VERSION",
    "Judgement",
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
    "generate_pool",
    "open_store",
    "parse_export",
    "profile_block",
    "profile_request",
    "question_bank",
    "validate_user_id",
]
