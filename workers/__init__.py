"""The plumbing every bindery process shares: settings, logs, the database and the broker,
per-process resources, the job registry and requests, the HTTP app and the CLI."""
