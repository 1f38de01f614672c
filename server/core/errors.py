"""Domain errors. Each protocol adapter maps them to its own wire answer (2030.5 Error, oadrResponse, JSON)."""


class DomainError(Exception):
    status = 400


class Invalid(DomainError):
    status = 400


class Forbidden(DomainError):
    status = 403


class NotFound(DomainError):
    status = 404


class Conflict(DomainError):
    status = 409
