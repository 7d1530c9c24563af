"""Durable state: PostgreSQL (db, migrations), durable files, the halt flag, alerts."""
