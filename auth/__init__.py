"""Users, roles, password hashing, login wiring and the access policy for every request."""
