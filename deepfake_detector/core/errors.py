"""The one exception type that reaches users: a one-line message naming the thing and the fix."""


class UserError(Exception):
    """A problem the user can fix (bad params, bad input, missing credentials).

    The stage scripts print ``error: <message>`` and exit with status 2 instead of a traceback
    (``entrypoint.run``).
    """


class ParamError(UserError):
    """A ``params.yaml`` value is missing, unknown or out of range."""


class DataError(UserError):
    """The input data (archive, folder, download) cannot be used as it is."""
