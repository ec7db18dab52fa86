"""Local stand-ins for the outside world (S3, SMTP, Stripe) that `bindery dev` and the tests start.

They are real servers in their own processes; nothing here runs in production.
"""
