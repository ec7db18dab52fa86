"""The periodic scheduler: jobs declared in code, each slot claimed once in Postgres."""
