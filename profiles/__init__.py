"""Per-user profiles: data models, the store seam and its embedded SQLite default.

>>> from personalizer.profiles import SQLiteProfileStore, Preference
"""

from .base import ProfilePage, ProfileStore
from .export import EXPORT_SCHEMA, EXPORT_SCHEMA_VERSION, ProfileExport, parse_export
from .models import Preference, Profile, validate_user_id
from .sqlite import DEFAULT_DB, SQLiteProfileStore, default_db_path

__all__ = [
    "DEFAULT_DB",
    "EXPORT_SCHEMA",
    "EXPORT_SCHEMA_VERSION",
    "Preference",
    "Profile",
    "ProfileExport",
    "ProfilePage",
    "ProfileStore",
    "SQLiteProfileStore",
    "default_db_path",
    "parse_export",
    "validate_user_id",
]
