"""The one exception type the CLI turns into a clear message without a traceback."""


class UserError(Exception):
    """Bad input from the user (a file, a task, an option). The message says where and why."""
