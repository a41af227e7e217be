"""User accounts: users, groups, grants and passwords."""
