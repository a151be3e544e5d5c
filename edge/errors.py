"""Errors phrased for the operator; the CLI prints them without a traceback."""


class UserFacingError(Exception):
    """An error whose message is complete for the operator: what, where, what to do."""
