"""Who is calling: the client a request's token names (see issue 13)."""

from colsum.task import ANONYMOUS


def current_client() -> str:
    return ANONYMOUS
