"""Test doubles that ship with wanbot (the fake WaveSpeed API runs as `wanbot fake-api`)."""
