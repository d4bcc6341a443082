"""Every error the server sends has OpenAI's shape, `{"error": {"message", "type", "code"}}`, with a 4xx status
when the caller can fix it; a 500 is a bug (its traceback goes to the log, never to the caller)."""

from typing import Optional

# the error type of each status, as OpenAI names them
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
               405: "invalid_request_error", 413: "invalid_request_error", 422: "invalid_request_error",
               429: "rate_limit_error", 501: "not_implemented_error", 503: "server_error", 504: "timeout_error"}


class ApiError(Exception):
    """A request the server refuses: `status`, a message that names the field or limit, a short `code`."""

    def __init__(self, status: int, message: str, code: str, headers: Optional[dict[str, str]] = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}

    def body(self) -> dict:
        return error_body(self.status, self.message, self.code)


def error_body(status: int, message: str, code: str) -> dict:
    return {"error": {"message": message, "type": ERROR_TYPES.get(status, "server_error"), "code": code}}
