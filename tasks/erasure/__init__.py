"""Account erasure: the policy's "deletion of your account and the above information at any time".

What other domains may ask of erasure: `erasure_has_begun` (of an instance's account) and
`open_erasure` (an account's request in grace or running)."""

from tasks.erasure.in_progress import erasure_has_begun, open_erasure

__all__ = ["erasure_has_begun", "open_erasure"]
