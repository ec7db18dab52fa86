"""localstripe with its objects kept in memory only.

localstripe pickles its whole store to `/tmp/localstripe.pickle` after every write, so
each call costs time in proportion to everything created so far: thousands of objects
in, a customer's deletion (with the cancellation of its subscriptions and their events)
takes seconds, which Stripe does not, and every localstripe on the machine overwrites the
same file. bindery always starts it from scratch, so nothing would read the file back.
"""

from __future__ import annotations

from localstripe import resources, server


def _keep_in_memory(self: resources.Store) -> None:
    return None


def main() -> None:
    resources.Store.dump_to_disk = _keep_in_memory
    server.start()


if __name__ == "__main__":
    main()
