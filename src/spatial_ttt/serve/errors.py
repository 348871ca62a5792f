"""One error type for everything a client got wrong; the app turns it into an HTTP status and a message."""


class ClientError(Exception):
    """A request the server refuses: ``status`` is the HTTP 4xx code, ``message`` names the problem."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message
