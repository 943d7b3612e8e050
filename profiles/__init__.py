"""Per-user profiles: data models, the store seam and its embedded SQLite default.

>>> from personalizer.profiles import SQLiteProfileStore, Preference
"""

from .base import ProfilePage, ProfileStore
from .conditioning import BLOCK_END, BLOCK_START, condition, profile_block
from .export import EXPORT_SCHEMA, EXPORT_SCHEMA_VERSION, ProfileExport, parse_export
from .learner import ProfileLearner
from .learning import Posterior
from .models import OnboardingState, Preference, Profile, validate_user_id
from .onboarding import (
    Onboarding,
    PoolItem,
    Question,
    default_reward_set,
    generate_pool,
    question_bank,
)
from .simulate import TASTES, SimulatedUser
from .sqlite import DEFAULT_DB, SQLiteProfileStore, UserTransaction, default_db_path

__all__ = [
    "BLOCK_END",
    "BLOCK_START",
    "DEFAULT_DB",
    "EXPORT_SCHEMA",
    "EXPORT_SCHEMA_VERSION",
    "Onboarding",
    "OnboardingState",
    "PoolItem",
    "Posterior",
    "Preference",
    "Profile",
    "ProfileExport",
    "ProfileLearner",
    "ProfilePage",
    "ProfileStore",
    "Question",
    "SQLiteProfileStore",
    "SimulatedUser",
    "TASTES",
    "UserTransaction",
    "condition",
    "default_db_path",
    "default_reward_set",
    "generate_pool",
    "parse_export",
    "profile_block",
    "question_bank",
    "validate_user_id",
]
