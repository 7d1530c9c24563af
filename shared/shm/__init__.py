"""Shared memory: kline and mark rings, their layout and zero-copy views, segments, heartbeats."""
