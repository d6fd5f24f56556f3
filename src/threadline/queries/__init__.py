"""The read side and the few use cases that own their transaction, shared by the API, the desk and the CLI.

A route handler (``web/api``) and a desk page (``web/desk``) that show the same thing call the same
function here instead of one calling the other's handler. Reads take an open session (the caller's
transaction) and return read models; use cases that must commit before they answer (a login records
a failed attempt, then refuses) take the ``Services``. No SQL here either: statements live in
``db/repos``. Sits between ``web`` (and ``cli``) and the process wiring in the layers contract.
"""
