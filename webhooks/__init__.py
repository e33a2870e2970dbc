"""Signed webhooks: tell other systems when runs finish, flags are raised, budgets run low.

Payloads are signed per the Standard Webhooks specification. A pending delivery is a row,
so a worker that dies between the run's commit and the delivery loses nothing.
"""
