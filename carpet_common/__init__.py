"""Shared plumbing of the three processes: settings, database set-up, server bootstrap,
error mapping, authentication and logging. Nothing here knows about credits or renders."""
