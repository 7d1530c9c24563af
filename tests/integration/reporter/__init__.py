"""Integration tests of the reporter: notifications against local Telegram/Discord stand-ins."""
