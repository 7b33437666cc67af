"""Frozen value types shared by every layer of the app. Standard library only."""
