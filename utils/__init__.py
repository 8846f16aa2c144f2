"""Helpers every layer may use (files on disk); they import nothing of the project."""
