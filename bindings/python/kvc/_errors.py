"""Exceptions mirroring kvc's status codes and its exit-code contract (kvc(7)).

Every exception is a KvcError with `code` (kvc's status code), `message` (the member's or the
client's message) and `exit_code` (what kvc-ctl would exit with). What an error means for a
write: Timeout is "outcome unknown" (it may or may not have been applied); every other error
means nothing was applied; CompareFailed is a definite answer ("not applied: the revision
differed").
"""


class KvcError(Exception):
    code = 13  # internal
    exit_code = 1

    def __init__(self, message):
        super().__init__(message)
        self.message = message


class InvalidArgument(KvcError):
    code = 1


class NotFound(KvcError):
    code, exit_code = 2, 3


class AlreadyExists(KvcError):
    code = 3


class CompareFailed(KvcError):
    code, exit_code = 4, 4


class FailedPrecondition(KvcError):
    """Also a refused handshake: a wrong or missing shared secret, another cluster."""
    code = 5


class Unavailable(KvcError):
    """No leader, no quorum, no member reachable: nothing was applied; retry later."""
    code, exit_code = 6, 5


class NotLeader(Unavailable):
    code = 7


class Timeout(KvcError):
    """The deadline passed after the request was sent: the outcome is unknown."""
    code, exit_code = 8, 6


class ShuttingDown(Unavailable):
    code = 9


class ResourceExhausted(KvcError):
    code = 10


class Corruption(KvcError):
    code = 11


class IOError_(KvcError):
    code = 12


class Internal(KvcError):
    code = 13


class PermissionDenied(KvcError):
    """The identity (a token's name, a certificate subject, "anonymous") may not do this
    (kvc-permissions(5)): nothing was applied."""
    code = 14


class Unauthenticated(KvcError):
    """The member refused the credentials: a token its permissions file does not name. Final:
    retrying or another member cannot change it."""
    code = 15


_BY_CODE = {c.code: c for c in (InvalidArgument, NotFound, AlreadyExists, CompareFailed,
                                FailedPrecondition, Unavailable, NotLeader, Timeout,
                                ShuttingDown, ResourceExhausted, Corruption, IOError_, Internal,
                                PermissionDenied, Unauthenticated)}


def error_for(code, message):
    """The exception for a status code (an unknown code, from a newer member, is Internal)."""
    return _BY_CODE.get(code, Internal)(message or "error code %d" % code)
