"""Account erasure: the policy's "deletion of your account and the above information at any time".

What other domains may ask of erasure: `erasure_has_begun`."""

from tasks.erasure.in_progress import erasure_has_begun

__all__ = ["erasure_has_begun"]
