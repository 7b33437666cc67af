"""Helpers the test suite shares across packages (the throwaway PostgreSQL server)."""
