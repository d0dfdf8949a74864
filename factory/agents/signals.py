"""``command_finished`` fires after the commit that records a command's result. It is only a
wake-up hint for whoever waits on the command (the workflow engine re-checks its step at once
instead of at its next poll); the database stays the truth and the poll still happens."""

from django.dispatch import Signal

command_finished = Signal()  # kwargs: finished = [(command_id, requested_by), ...]
