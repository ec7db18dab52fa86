"""Account erasure: the policy's "deletion of your account and the above information at any time"."""
