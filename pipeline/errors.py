"""The errors a user can cause, in one family, so the CLI catches them in one place.

Everything a person can fix (a file that cannot be read, a label file that breaks a rule, a model
that fails its checksum, a wrong option) raises a `PolicyDomainsError` whose message already names
the file and, where known, the line. The CLI prints it as one line and exits 1. Any other
exception is a bug in this project and keeps its traceback.
"""
from __future__ import annotations


class PolicyDomainsError(Exception):
    """Something the user can fix; the message says what and where (``file:line: what to do``)."""


class IngestError(PolicyDomainsError):
    """A report or table that cannot be read."""


class LabelError(PolicyDomainsError):
    """Label files (annotations, adjudications, examples, queues, Label Studio exports) that break a rule."""


class ModelError(PolicyDomainsError):
    """No model where one was asked for, or one that cannot serve this request."""


class ModelIntegrityError(ModelError):
    """A model file that fails its checksum or holds untrusted types: never loaded."""


class UsageError(PolicyDomainsError):
    """Options or paths that do not fit together (unknown format, unknown strategy, …)."""
