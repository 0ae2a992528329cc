"""Numbered migrations, applied in order by carpet_common.migrate.apply_migrations."""
import os

DIRECTORY = os.path.dirname(os.path.abspath(__file__))
