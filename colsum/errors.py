"""One small exception tree; library errors are translated into it where they are raised."""


class ColsumError(Exception):
    """Root of every error Colsum raises on purpose."""


class TransientError(ColsumError):
    """Might heal by itself (a dropped connection, a timeout): worth retrying."""


class PermanentError(ColsumError):
    """Will fail the same way every time (missing file, bad CSV): fail the task at once.

    The message is shown to the user as the task's `error`, so it must say what to fix.
    """


class InvalidCSV(PermanentError):
    """The file is not a CSV Colsum can sum; the message names the line (and column)."""


class InvalidNumbers(PermanentError):
    """A file of integers (a sum_even task) holds something else; the message names the line."""


class BrokerUnavailable(ColsumError):
    """RabbitMQ did not take the message (down, unreachable, or it did not confirm)."""


class BrokerMisconfigured(BrokerUnavailable):
    """RabbitMQ holds objects under our names that do not fit: an operator must act."""


class StoreUnavailable(ColsumError):
    """Redis could not be reached."""


class SourceChanged(PermanentError):
    """The file was replaced while it was being read: its bytes so far belong to another
    version, so the sum must start again from byte 0 (once) or fail."""


class TaskInterrupted(ColsumError):
    """The task was stopped from outside (its time limit): the reason is already recorded."""


class TooManyQueued(ColsumError):
    """A client already has MAX_QUEUED_PER_CLIENT tasks waiting: it must wait for some."""
