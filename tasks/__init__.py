"""The domains: billing, backups, erasure, breach, and the system jobs. Each declares its
actors in its `actors` module and its commands in `commands`; workers/domains.py is
where the processes collect them."""
