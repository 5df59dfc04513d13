"""kha's ground floor: what ``installer``, ``harness``, ``images`` and ``scenarios`` all stand on.

One error root (``errors``), one command-failure type (``errors.CommandFailed``), one way to run a
command on this machine (``run``), one step printer (``progress``), one poll-until-deadline loop
(``waiting``). This package imports none of the four above it; the dependency test keeps it so.
"""
