"""The dashboard (`/dashboard/`, a merchant's staff) and the operator console
(`/console/`): server-rendered pages over the same books, payments and merchants the API
and the CLI use, behind their own sign-in (users.py, sessions.py)."""
