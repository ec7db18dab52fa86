"""How the services of a development or CI machine are started when they are down: the
commands the tests and `bindery dev` name in their one-line error (the README lists them)."""

from __future__ import annotations

START_POSTGRES = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
START_REDIS = (
    'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no '
    "--dir /var/lib/redis --logfile /var/log/redis/redis-server.log"
)
START_RABBITMQ = "rabbitmq-server -detached"
