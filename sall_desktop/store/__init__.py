"""The only SQL in the app: the SQLite label store, its migrations and repositories."""
